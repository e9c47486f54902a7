"""run-tests.sh's two pytest phases: tests/conftest.py marks a test that uses the Docker fixtures `docker`
even when its file does not say so, so `-m docker` and `-m "not docker"` split the tree with nothing lost."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRAFTED = '''
import pytest

@pytest.fixture
def docker_engine():
    return object()

def test_pure():
    assert True

def test_uses_the_engine(docker_engine):
    assert docker_engine

@pytest.mark.docker
def test_marked_by_hand():
    assert True
'''


def collected(where: Path, expr: str) -> set[str]:
    """Node ids pytest collects under `where` for the mark expression (run in a subprocess, no plugins' cache)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", expr,
                           "-o", "markers=docker: engine", str(where)], cwd=where, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    return {line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line}


def test_a_test_using_the_engine_fixture_lands_in_the_docker_phase(tmp_path: Path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_crafted.py").write_text(CRAFTED)
    docker, rest = collected(tmp_path, "docker"), collected(tmp_path, "not docker")
    assert docker == {"test_uses_the_engine", "test_marked_by_hand"}, docker
    assert rest == {"test_pure"}, rest


def test_without_the_hook_the_unmarked_engine_test_would_run_in_the_wrong_phase(tmp_path: Path):
    (tmp_path / "test_crafted.py").write_text(CRAFTED)
    assert collected(tmp_path, "docker") == {"test_marked_by_hand"}
