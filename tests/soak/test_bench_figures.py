"""bench.chaos reads a run's own soak.json (never a shrink candidate's) and says why when there is none."""
import json

import pytest

from bench.chaos import BenchError, soak_json


def test_the_runs_own_soak_is_read_not_a_shrink_candidates(tmp_path):
    for sub in ("shrink/candidate-00", "soak"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "soak.json").write_text("{}")
    assert soak_json(tmp_path) == tmp_path / "soak" / "soak.json"
    (tmp_path / "soak" / "soak.json").unlink()
    with pytest.raises(BenchError):      # only a candidate's is left: that is not this run's figures
        soak_json(tmp_path)


def test_a_run_that_ended_before_its_soak_names_its_exit_and_environment_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"exit_code": 2, "environment_error": "unhealthy service",
                                                       "detail": "not healthy within 118s: worker-a2"}))
    with pytest.raises(BenchError, match=r"no soak.json .*exit 2: unhealthy service: not healthy within 118s"):
        soak_json(tmp_path)
