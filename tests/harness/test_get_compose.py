"""scripts/get-compose-v2.sh refuses what it cannot verify (served from a mirror on 127.0.0.1)."""
import functools
import http.server
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "get-compose-v2.sh")


@pytest.fixture
def mirror(tmp_path):
    """An HTTP mirror on 127.0.0.1 serving tmp_path/www; yields (url, root)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()


def run_script(tmp_path, url):
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "APIARY_DEBIAN_MIRROR": url,
           "APIARY_COMPOSE_DEST": str(tmp_path / "tools" / "docker-compose")}
    return subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def test_a_release_file_with_a_bad_signature_is_refused(tmp_path, mirror):
    url, www = mirror
    (www / "dists" / "trixie").mkdir(parents=True)
    (www / "dists" / "trixie" / "InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: trixie\n"
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")
    out = run_script(tmp_path, url)
    assert out.returncode == 1
    assert "InRelease signature does not verify" in out.stderr, out.stderr
    assert not (tmp_path / "tools" / "docker-compose").exists()


def test_an_unreachable_suite_is_named(tmp_path, mirror):
    url, _ = mirror
    out = run_script(tmp_path, url)
    assert out.returncode == 1
    assert f"cannot read {url}/dists/trixie" in out.stderr, out.stderr
