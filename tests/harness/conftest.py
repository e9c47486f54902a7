"""Fixtures for harness tests: a Docker engine (skip with the reason when there is none)."""
import pytest


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker SDK client; skips the test when no engine answers."""
    try:
        from harness.cluster import docker_client
        return docker_client(5)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine reachable: {exc}")
