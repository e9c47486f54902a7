"""Selection (paths, FILE:LINE, tags, -k), the --list output and usage errors (exit 4), with behave's
parser and with the stdlib scan --list falls back to without a venv."""
import pytest

from harness import options, runner, selection

FEATURE = """@area
Feature: Shop
  Background:
    Given a shop

  @smoke
  Scenario: Buy one
    When I buy 1

  Scenario Outline: Buy <n> at once
    When I buy <n>
    @big
    Examples: many
      | n  |
      | 5  |
      | 50 |

  @slow
  Scenario: Buy nothing
    When I buy 0
"""
OTHER = """Feature: Till
  Scenario: Buy one
    When I pay
"""


@pytest.fixture(params=["behave", "stdlib"])
def feats(request, tmp_path, monkeypatch):
    """A features dir with two files; parsed by behave or (no behave importable) by the stdlib scan."""
    if request.param == "stdlib":
        monkeypatch.setattr(selection, "behave_available", lambda: False)
    d = tmp_path / "features"
    d.mkdir()
    (d / "shop.feature").write_text(FEATURE)
    (d / "till.feature").write_text(OTHER)
    monkeypatch.setenv("APIARY_CWD", str(tmp_path))
    return tmp_path


def picked(root, paths=(), tags=(), names=()):
    sel = selection.make_selection(list(paths) or ["features"], list(tags), list(names), root=root)
    return [(i.path, i.line, i.name.strip()) for i in selection.select(sel, root=root)]


def test_a_directory_selects_every_scenario_and_outline_row_in_file_order(feats):
    assert picked(feats) == [("features/shop.feature", 7, "Buy one"),
                             ("features/shop.feature", 15, "Buy 5 at once -- @1.1 many"),
                             ("features/shop.feature", 16, "Buy 50 at once -- @1.2 many"),
                             ("features/shop.feature", 19, "Buy nothing"),
                             ("features/till.feature", 2, "Buy one")]


@pytest.mark.parametrize("line, lines", [(7, [7]), (8, [7]), (10, [15, 16]), (16, [16]), (2, [7, 15, 16, 19]),
                                         (1, [7, 15, 16, 19]), (99, [19])])
def test_file_line_selects_what_behave_selects_there(feats, line, lines):
    assert [ln for _, ln, _ in picked(feats, [f"features/shop.feature:{line}"])] == lines


def test_tags_inherit_from_feature_and_examples_and_names_are_regexes(feats):
    assert [n for _, _, n in picked(feats, tags=["@big"])] == ["Buy 5 at once -- @1.1 many", "Buy 50 at once -- @1.2 many"]
    assert [ln for _, ln, _ in picked(feats, tags=["@area and not @slow", "not @big"])] == [7]
    assert [p for p, _, _ in picked(feats, names=["^Buy one$"])] == ["features/shop.feature", "features/till.feature"]
    assert [ln for _, ln, _ in picked(feats, names=[r"@1\.2", "nothing"])] == [16, 19]


def test_list_output_names_location_feature_scenario_and_tags(feats):
    sel = selection.make_selection(["features/shop.feature"], ["@smoke or @big"], [], root=feats)
    text = selection.format_list(selection.select(sel, root=feats)).splitlines()
    assert text[0].split() == ["features/shop.feature:7", "Shop", "›", "Buy", "one", "@area", "@smoke"]
    assert text[2].endswith("Buy 50 at once -- @1.2 many  @area @big")
    assert text[-1].startswith("3 scenario(s) in 1 feature file(s) selected")


@pytest.mark.parametrize("paths, tags, names, fragment", [
    (["features/none.feature"], [], [], "no such feature"), (["features:3"], [], [], "needs a feature file"),
    ([], ["@a and"], [], "--tags"), ([], [], ["("], "not a regular expression")])
def test_bad_selection_arguments_are_usage_errors(feats, paths, tags, names, fragment):
    with pytest.raises(selection.UsageError, match=fragment):
        selection.make_selection(paths, tags, names, root=feats)


def test_argparse_errors_exit_4_not_2(capsys):
    with pytest.raises(SystemExit) as exc:
        options.parse_args(["--no-such-option"])
    assert exc.value.code == options.EXIT_USAGE == 4
    with pytest.raises(SystemExit) as exc:
        options.parse_args(["--soak", "features/x.feature"])
    assert exc.value.code == 4 and "take no feature paths" in capsys.readouterr().err


def test_paths_drop_the_default_tag_and_k_x_reach_behave(tmp_path):
    args = options.parse_args(["features/validation.requests.feature:35", "-k", "bad field", "-x"])
    assert args.tags == [] and args.fail_fast and args.names == ["bad field"]
    runner.choose_scenarios(args)
    cmd = runner.behave_command(args, tmp_path)
    assert cmd[3].endswith("features/validation.requests.feature:35")
    assert cmd[cmd.index("--name") + 1] == "bad field" and "--stop" in cmd and "--tags" not in cmd
    assert options.parse_args(["-k", "x"]).tags == ["@integration"]


def no_stack(*_args, **_kw):
    raise AssertionError("--list must not touch an engine, build or start anything")


def test_main_lists_without_building_or_starting(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(runner, "choose_backend", no_stack)
    monkeypatch.setattr("apiary_suite.entry.build_images", no_stack)
    code = runner.main(["--list", "--tags", "@smoke", "-k", "Malformed", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "features/validation.requests.feature:9" in out and "@smoke" in out
    assert "1 scenario(s) in 1 feature file(s)" in out and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["features/nope.feature"], ["-k", "no scenario is called this"],
                                  ["--tags", "@smoke and ("], ["--list", "-k", "["]])
def test_main_returns_4_on_a_usage_error_before_anything_starts(monkeypatch, capsys, tmp_path, argv):
    monkeypatch.setattr(runner, "choose_backend", no_stack)
    assert runner.main(argv + ["--report-dir", str(tmp_path)]) == runner.EXIT_USAGE == 4
    assert "usage error" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("line", [8, 10, 16, 2])
def test_file_line_agrees_with_behave_itself(tmp_path, line):
    """The same FILE:LINE given to behave --dry-run runs the scenarios the selection lists."""
    import subprocess
    import sys
    (tmp_path / "features" / "steps").mkdir(parents=True)
    (tmp_path / "features" / "shop.feature").write_text(FEATURE)
    loc = f"features/shop.feature:{line}"
    proc = subprocess.run([sys.executable, "-m", "behave", "--dry-run", "--no-summary", "--no-skipped", "-f", "plain", "--no-snippets",
                           loc], cwd=tmp_path, capture_output=True, text=True)
    ran = [ln.split(":", 1)[1].strip() for ln in proc.stdout.splitlines() if ln.lstrip().startswith("Scenario")]
    sel = selection.make_selection([str(tmp_path / loc)], [], [], root=tmp_path)
    assert ran and ran == [i.name.strip() for i in selection.select(sel, root=tmp_path)]
