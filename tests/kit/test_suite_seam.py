"""The runner's one seam to a suite (harness/suite.py): the module the compose file's x-apiary.suite names,
with every hook the runner calls; a file that names none, a module that does not import and a module that
lacks hooks each stop the run with an error naming the file and what is wrong."""
from pathlib import Path

import pytest

from harness.errors import EnvironmentSetupError
from harness.suite import HOOKS, load_suite


def compose(tmp_path: Path, suite: str | None) -> Path:
    """A one-service compose file whose x-apiary block names `suite` (or nothing)."""
    line = f"  suite: {suite}\n" if suite else ""
    path = tmp_path / "docker-compose.yml"
    path.write_text(f"services:\n  a:\n    image: x\nx-apiary:\n{line}  services:\n    a: {{}}\n")
    return path


def test_the_repository_stack_names_the_apiary_suite_with_every_hook():
    suite = load_suite()
    assert suite.__name__ == "apiary_suite.entry"
    assert all(callable(getattr(suite, h)) for h in HOOKS)


@pytest.mark.parametrize("name,says", [(None, "x-apiary.suite names no module"),
                                       ("no_such_suite_module", "does not import"),
                                       ("json", "lacks the hooks ['build_images'")])
def test_a_file_without_a_usable_suite_is_an_error_naming_it(tmp_path, name, says):
    path = compose(tmp_path, name)
    with pytest.raises(EnvironmentSetupError) as err:
        load_suite(path)
    assert str(path) in err.value.detail and says in err.value.detail, err.value.detail
