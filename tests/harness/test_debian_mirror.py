"""scripts/debian-mirror.sh: the build scripts' Debian mirror comes from APIARY_DEBIAN_MIRROR, else the host's
apt sources (deb822 or one-line), never the security or updates archive; with neither, a clear error."""
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "debian-mirror.sh"


def mirror(etc: Path, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "APIARY_DEBIAN_MIRROR"}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=10,
                          env={**full, "APIARY_APT_ETC": str(etc), **env})


def test_deb822_sources_give_the_main_archive_not_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.internal/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example.internal/debian/\nSuites: bookworm\n")
    out = mirror(tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "http://mirror.example.internal/debian", out


def test_a_one_line_sources_list_with_options_is_read(tmp_path):
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://proxy.local:3142/debian bookworm main\n")
    assert mirror(tmp_path).stdout.strip() == "http://proxy.local:3142/debian"


def test_the_override_wins_and_no_sources_is_an_error_naming_the_variable(tmp_path):
    assert mirror(tmp_path, APIARY_DEBIAN_MIRROR="http://own/debian/").stdout.strip() == "http://own/debian"
    out = mirror(tmp_path)
    assert out.returncode == 1 and "set APIARY_DEBIAN_MIRROR" in out.stderr and str(tmp_path) in out.stderr
