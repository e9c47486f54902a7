"""The runner's scale-out options without a stack: usage errors exit 4 naming the clash, and --shard i/N
with --list prints a part of the selection such that the N parts are disjoint and cover it exactly."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=120):
    """The runner's python entry point (what run-integration-tests.sh execs), its exit code and output."""
    proc = subprocess.run([sys.executable, "-m", "harness.runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"})
    return proc.returncode, proc.stdout + proc.stderr


def listed(out: str) -> list[str]:
    """The locations --list printed (first column of each scenario line)."""
    return [line.split()[0] for line in out.splitlines() if line.startswith("features/")]


@pytest.mark.parametrize("args, words", [
    (["--shards", "0"], "at least 1"),
    (["--shards", "2", "--shard", "1/2"], "pick one"),
    (["--shard", "3/2"], "--shard"),
    (["--shard", "two"], "--shard"),
    (["--shards", "2", "--keep-up"], "--keep-up"),
    (["--shards", "2", "--soak"], "--soak"),
    (["--docker-host", "unix:///nowhere.sock", "--backend", "local"], "--backend local"),
    (["--durations", "x.json"], "--durations FILE is for --shard"),
])
def test_clashing_scale_out_options_are_usage_errors_naming_the_clash(args, words):
    code, out = run(*args)
    assert code == 4, out
    assert words in out, out


def test_the_parts_of_a_matrix_split_are_disjoint_and_cover_the_selection():
    code, out = run("--tags", "@integration", "--list")
    assert code == 0, out
    whole = listed(out)
    assert len(whole) > 20
    parts = []
    for i in (1, 2, 3):
        code, out = run("--tags", "@integration", "--shard", f"{i}/3", "--list")
        assert code == 0, out
        parts.append(listed(out))
    assert all(parts), f"an empty part: {[len(p) for p in parts]}"
    assert sorted(sum(parts, [])) == sorted(whole)
    again = listed(run("--tags", "@integration", "--shard", "2/3", "--list")[1])
    assert again == parts[1], "the split changed between two identical calls"


def test_durations_drive_the_split_longest_first_and_a_bad_file_is_named(tmp_path):
    code, out = run("--tags", "@integration", "--list")
    rows = [line for line in out.splitlines() if line.startswith("features/")]
    keys = {line.split()[0]: line.split("  ", 1)[1].strip().rsplit("  @", 1)[0].strip() for line in rows}
    heavy = sorted(keys)[0]
    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps({key: (1000.0 if loc == heavy else 1.0) for loc, key in keys.items()}))
    parts = [listed(run("--tags", "@integration", "--shard", f"{i}/2", "--durations", str(durations), "--list")[1])
             for i in (1, 2)]
    alone = next(p for p in parts if heavy in p)
    assert alone == [heavy], f"the 1000 s scenario shares its part with {len(alone) - 1} others"
    assert sorted(sum(parts, [])) == sorted(keys)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out = run("--tags", "@integration", "--shard", "1/2", "--durations", str(bad), "--list")
    assert code == 4 and "bad.json" in out, out
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"a": "slow"}))
    code, out = run("--tags", "@integration", "--shard", "1/2", "--durations", str(wrong), "--list")
    assert code == 4 and "wrong.json" in out, out
