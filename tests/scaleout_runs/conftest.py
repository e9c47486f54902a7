"""The Docker fixtures of tests/harness (an engine, the stack images built once), shared here."""
from tests.harness.conftest import docker_engine, stack_images  # noqa: F401
