"""Session hooks for the whole test tree: a test that uses the Docker fixtures is marked `docker` even if its
file forgot to say so, and under pytest-xdist (`--dist loadgroup`) every file is one group, so a module's
fixtures (a local stack, a compose project) start once and its tests never race each other."""
import pytest

DOCKER_FIXTURES = {"docker_engine", "stack_images"}


def group_of(item: pytest.Item) -> str | None:
    """The xdist group a test already names (a file may put itself in a shared group), else None."""
    for mark in item.iter_markers("xdist_group"):
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark Docker users `docker`; give every test without a group its file as the group."""
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.docker)
        if group_of(item) is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
