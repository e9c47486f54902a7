"""`run-integration-tests.sh --setup`, run from a copy with its own requirements/ and a local wheel (no
index): it installs requirements/dev.lock with pip enforcing the hashes, and its stamp covers the lock
files, so changing either lock re-installs the venv."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def setuptools_wheel() -> Path:
    """A setuptools wheel on this machine (ensurepip's bundled one, or Debian's python-wheels)."""
    places = [Path(sysconfig.get_paths()["stdlib"]) / "ensurepip" / "_bundled", Path("/usr/share/python-wheels")]
    found = sorted(w for p in places for w in p.glob("setuptools-*-py3-none-any.whl"))
    if not found:
        pytest.skip(f"no setuptools wheel in {', '.join(map(str, places))} to install from a local lock")
    return found[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A copy of the front door beside its own requirements/ and wheels/ (one venv for the module)."""
    root = tmp_path_factory.mktemp("front-door")
    shutil.copy2(ROOT / "run-integration-tests.sh", root)
    (root / "requirements").mkdir()
    (root / "wheels").mkdir()
    shutil.copy2(setuptools_wheel(), root / "wheels")
    return root


@pytest.fixture
def project(made) -> Path:
    """That copy with comment-only requirements, set up, and setuptools removed from its venv (so a lock
    naming setuptools has something to install)."""
    for name in ("dev.txt", "services.txt", "dev.lock", "services.lock"):
        (made / "requirements" / name).write_text(f"# {name}\n")
    first = setup(made)
    assert first.returncode == 0, first.stderr
    uninstall_setuptools(made)
    assert setuptools_version(made) is None
    return made


def uninstall_setuptools(project: Path) -> None:
    """Remove setuptools from the project's venv (a no-op when it is absent)."""
    subprocess.run([str(project / "venv/bin/python"), "-m", "pip", "uninstall", "-q", "-y", "setuptools"],
                   check=True, capture_output=True, timeout=120)


def setup(project: Path) -> subprocess.CompletedProcess:
    """The copy's --setup, its venv under the project, pip limited to the project's wheels."""
    env = dict(os.environ, APIARY_VENV=str(project / "venv"), PIP_NO_INDEX="1",
               PIP_FIND_LINKS=str(project / "wheels"))
    return subprocess.run([str(project / "run-integration-tests.sh"), "--setup"], capture_output=True,
                          text=True, env=env, timeout=120)


def setuptools_version(project: Path) -> str | None:
    """The setuptools version installed in the project's venv, None when absent."""
    p = subprocess.run([str(project / "venv/bin/python"), "-c", "import setuptools; print(setuptools.__version__)"],
                       capture_output=True, text=True, timeout=60)
    return p.stdout.strip() if p.returncode == 0 else None


def wheel_version(project: Path) -> str:
    """The version of the project's one setuptools wheel."""
    return next((project / "wheels").glob("*.whl")).name.split("-")[1]


def wheel_hash(project: Path) -> str:
    """The sha256 of the project's one setuptools wheel, computed here."""
    return hashlib.sha256(next((project / "wheels").glob("*.whl")).read_bytes()).hexdigest()


def lock_line(project: Path, hash_: str | None) -> str:
    """The setuptools entry of a lock, with that sha256 (or none)."""
    entry = f"setuptools=={wheel_version(project)}"
    return entry + (f" \\\n    --hash=sha256:{hash_}\n" if hash_ else "\n")


def test_the_lock_is_installed_only_with_matching_hashes(project):
    dev_lock = project / "requirements" / "dev.lock"
    for hash_, complaint in ((None, "Hashes are required"), ("0" * 64, "DO NOT MATCH THE HASHES")):
        dev_lock.write_text(lock_line(project, hash_))
        refused = setup(project)
        assert refused.returncode == 2, refused.stderr
        assert "could not install requirements/dev.lock" in refused.stderr and complaint in refused.stderr
        assert setuptools_version(project) is None

    dev_lock.write_text(lock_line(project, wheel_hash(project)))
    installed = setup(project)
    assert installed.returncode == 0, installed.stderr
    assert setuptools_version(project) == wheel_version(project)


@pytest.mark.parametrize("changed", ["services.lock", "dev.lock"])
def test_changing_a_lock_file_reinstalls_the_venv(project, changed):
    requirements = project / "requirements"
    (requirements / "dev.lock").write_text(lock_line(project, wheel_hash(project)))
    assert setup(project).returncode == 0 and setuptools_version(project) is not None
    uninstall_setuptools(project)

    unchanged = setup(project)     # same stamp: nothing is installed, setuptools stays absent
    assert unchanged.returncode == 0 and setuptools_version(project) is None, unchanged.stderr

    with (requirements / changed).open("a") as f:
        f.write("# re-locked\n")
    relocked = setup(project)
    assert relocked.returncode == 0, relocked.stderr
    assert setuptools_version(project) is not None, f"{changed} changed but the venv was not re-installed"
