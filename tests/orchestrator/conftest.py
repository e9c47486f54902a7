"""Fixtures: one orchestrator subprocess per module (reset between tests) and fake hives per test."""
from __future__ import annotations

import itertools

import pytest

from .fakes import FakeHive, Orch

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def orch(tmp_path_factory):
    proc = Orch(tmp_path_factory.mktemp("orch")).start()
    yield proc
    proc.stop()


@pytest.fixture
def make_hive(orch):
    """Start fake hives against the module's orchestrator; stop them and reset the orchestrator after."""
    hives = []

    def make(workers=None, **kw):
        n = next(_ids)
        workers = workers if workers is not None else [{"id": f"w{n}-a"}, {"id": f"w{n}-b"}]
        hive = FakeHive(orch.router, kw.pop("hive_id", f"hive-{n}"), workers, **kw).start()
        hives.append(hive)
        return hive

    yield make
    for hive in hives:
        hive.stop()
    orch.post("/v1/admin/reset", key="key-admin")
