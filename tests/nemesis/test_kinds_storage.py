"""The storage kinds read the stack's own x-apiary storage block: a second compose file brings its own
service, file and user; without a `noticed` block a changed header is the whole proof; without a header
the change alone counts; a stack with no storage offers no storage target; a bad header_hex is named."""
import dataclasses

import pytest

from harness.errors import NemesisError
from harness.nemesis.kinds_storage import storage_of
from harness.nemesis.protocol import lookup
from harness.stack import default_topology
from tests.nemesis.fakes import SQLITE, FakeStack

OTHER = {"service": "hive-a", "dir": "/var/lib/hive", "file": "/var/lib/hive/state.bin", "user": "10002"}


def stack_with(storage: dict, **kw) -> FakeStack:
    """The fake stack, its topology carrying this storage block instead of the compose file's."""
    stack = FakeStack(**kw)
    stack.topology = dataclasses.replace(default_topology(), storage=storage)
    return stack


def test_a_second_stack_brings_its_own_storage_service_file_and_user():
    stack = stack_with(OTHER)
    kind = lookup("storage-corrupt")
    assert kind.targets(stack) == ["hive-a"] and lookup("storage-read-only").targets(stack) == ["hive-a"]
    fault = kind.apply(stack, "hive-a")
    assert [c[:2] for c in stack.calls if c[0] in ("stop", "start")] == [("stop", "hive-a"), ("start", "hive-a")]
    scripts = [c[1] for c in stack.calls if c[0] == "volume_shell"]
    assert "> /var/lib/hive/state.bin" in scripts[0] and "chown 10002:10002 /var/lib/hive/state.bin" in scripts[0]
    assert scripts[1].startswith("head -c 16 /var/lib/hive/state.bin")
    ev = fault.verify()
    assert ev["held"] is True, ev
    assert ev["evidence"]["header_before_hex"] == SQLITE.hex() and ev["evidence"]["header_changed"] is True
    assert "moved_aside" not in ev["evidence"] and "corrupt_event_logged" not in ev["evidence"], ev
    assert fault.heal() == []


def test_with_no_header_and_nothing_noticed_an_unchanged_file_does_not_hold():
    stack = stack_with(OTHER, ignore={"corrupt"})
    fault = lookup("storage-corrupt").apply(stack, "hive-a", verify_timeout_s=0.2)
    ev = fault.verify()
    assert ev["held"] is False and ev["evidence"]["header_changed"] is False, ev
    fault.heal()


def test_a_corrupted_file_the_service_never_notices_does_not_hold_where_the_block_says_how_it_notices():
    stack = FakeStack(ignore={"recover"})                  # the compose file's block: event + moved aside
    fault = lookup("storage-corrupt").apply(stack, "orchestrator", verify_timeout_s=0.2)
    ev = fault.verify()
    assert ev["evidence"]["header_changed"] is True and ev["held"] is False, ev
    assert ev["evidence"]["moved_aside"] == [] and ev["evidence"]["corrupt_event_logged"] is False, ev


def test_a_stack_with_no_storage_block_offers_no_storage_target():
    stack = stack_with({})
    for name in ("storage-corrupt", "storage-read-only"):
        assert lookup(name).targets(stack) == []
        with pytest.raises(NemesisError, match="not accepted on this stack"):
            lookup(name).apply(stack, "orchestrator")
    assert stack.calls == []


def test_a_header_hex_that_is_not_hex_is_named():
    with pytest.raises(NemesisError, match=r"x-apiary.storage.header_hex is not hex: 'SQLite'"):
        storage_of(stack_with({**OTHER, "header_hex": "SQLite"}))


def test_the_compose_files_block_names_sqlites_header_and_how_the_orchestrator_notices():
    st = storage_of(FakeStack())
    assert (st.service, st.file, st.user, st.header) == ("orchestrator", "/data/registry.db", "10001", SQLITE)
    assert (st.event, st.moved_prefix) == ("registry.corrupt", "registry.db.corrupt-")
