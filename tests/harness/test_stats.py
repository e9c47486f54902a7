"""The one percentile (harness.stats): nearest rank with ceil, shared by the harness, the benchmarks and the client."""
import pytest

import bench.common
import apiary_suite.checker
import apiary_suite.load
from examples.client import stats as client_stats
from harness.stats import percentile


def test_nearest_rank_is_ceil_of_q_n():
    data = [float(i) for i in range(1, 11)]          # 10 values: rank = ceil(q/100 * 10)
    assert percentile(data, 50) == 5.0               # round(5 + 0.5) would give 6 (the old checker/bench helper)
    assert percentile(data, 95) == 10.0
    assert percentile(data, 10) == 1.0
    assert percentile(data, 11) == 2.0
    assert percentile(data, 0) == 1.0 and percentile(data, 100) == 10.0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8], 50) == 4    # round(4.5) = 4 by luck of half-to-even
    assert percentile([1, 2, 3, 4, 5, 6], 50) == 3          # round(3.5) = 4: the helpers used to disagree here


def test_float_noise_does_not_move_the_rank():
    data = list(range(1, 101))
    assert percentile(data, 7) == 7                  # 0.07 * 100 = 7.000000000000001 in floats
    assert percentile(data, 57) == 57
    assert percentile(list(range(1, 1001)), 99.9) == 999


def test_unordered_input_nones_empty_and_bounds():
    assert percentile([5, 1, None, 3], 50) == 3
    assert percentile([], 50) is None and percentile([None], 50) is None
    assert percentile((x for x in [2.0]), 99) == 2.0
    with pytest.raises(ValueError):
        percentile([1], 101)
    with pytest.raises(ValueError):
        percentile([1], -1)


def test_every_caller_uses_the_one_home():
    for module in (apiary_suite.checker, apiary_suite.load, bench.common, client_stats):
        assert module.percentile is percentile, module.__name__
