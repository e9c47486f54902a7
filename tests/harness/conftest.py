"""Fixtures for harness tests: a Docker engine (skip with the reason when there is none) and the stack's
images, built once per session exactly as the runner builds them (an empty engine has none)."""
import pytest


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker SDK client; skips the test when no engine answers."""
    try:
        from apiary_suite.cluster import docker_client
        return docker_client(5)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine reachable: {exc}")


@pytest.fixture(scope="session")
def stack_images(docker_engine, tmp_path_factory):
    """{image: id} of the three service images, built (or found cached) by scripts/build-images.sh;
    a failed build fails the test with the build's own message."""
    from apiary_suite.entry import build_images
    return build_images(tmp_path_factory.mktemp("build"), True)
