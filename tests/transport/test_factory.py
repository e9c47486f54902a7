"""TransportFactory config validation, TransportOptions validation, local addresses, missing pyzmq."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.transport import (ConfigError, PipeTransport, TransportFactory, TransportOptions, check_address,
                                local_address)

pytestmark = pytest.mark.timeout(30)
ZMQ = {"transport": "zeromq", "pattern": "push_pull", "role": "pull", "protocol": "tcp",
       "address": "tcp://127.0.0.1:*", "mode": "bind", "zeromq": {"linger_ms": 0}}


@pytest.mark.parametrize("change,key,allowed", [
    ({"colour": "blue"}, "colour", "allowed keys: transport, pattern"),
    ({"transport": "carrier-pigeon"}, "transport", "zeromq, pipe"),
    ({"pattern": "broadcast"}, "pattern", "pub_sub, push_pull, req_rep, router_dealer"),
    ({"pattern": "pub_sub", "role": "push"}, "role", "publisher, subscriber"),
    ({"role": None}, "role", "push, pull"),
    ({"protocol": "udp"}, "protocol", "tcp, ipc, inproc"),
    ({"mode": "listen"}, "mode", "bind, connect"),
    ({"zeromq": {"hwm": 5}}, "zeromq.'hwm'", "high_water_mark"),
    ({"zeromq": {"high_water_mark": -2}}, "high_water_mark", ">= 0"),
    ({"zeromq": {"linger_ms": "soon"}}, "linger_ms", "integer"),
    ({"zeromq": {"tcp_keepalive": 2}}, "tcp_keepalive", "-1, 0, 1"),
    ({"pipe": {"framing": "line"}}, "pipe", "only allowed with transport 'pipe'"),
    ({"address": "ipc:///tmp/x.sock"}, "address", "does not match protocol 'tcp'"),
    ({"address": "tcp://localhost"}, "address", "HOST:PORT"),
    ({"mode": "connect", "address": "tcp://127.0.0.1:*"}, "address", "only valid for bind"),
    ({"mode": "connect", "address": None}, "address", "required to connect over tcp"),
])
def test_zeromq_config_errors_name_the_key_and_the_allowed_values(change, key, allowed):
    config = {k: v for k, v in {**ZMQ, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        TransportFactory.from_config(config)
    assert key in str(info.value) and allowed in str(info.value)


@pytest.mark.parametrize("config,key,allowed", [
    ({"transport": "pipe", "pattern": "pub_sub"}, "pattern", "allowed values: push_pull"),
    ({"transport": "pipe", "protocol": "ipc"}, "protocol", "not allowed with transport 'pipe'"),
    ({"transport": "pipe", "zeromq": {}}, "zeromq", "not allowed with transport 'pipe'"),
    ({"transport": "pipe", "pipe": {"framing": "xml"}}, "framing", "line, length"),
    ({"transport": "pipe", "pipe": {"line_encoding": "hex"}}, "line_encoding", "base64, raw"),
    ({"transport": "pipe", "pipe": {"buffer": 1}}, "pipe.'buffer'", "framing, line_encoding, command"),
    ({"transport": "pipe", "pipe": {"command": "echo hi"}}, "pipe.command", "list of strings"),
])
def test_pipe_config_errors_name_the_key(config, key, allowed):
    with pytest.raises(ConfigError) as info:
        TransportFactory.from_config(config)
    assert key in str(info.value) and allowed in str(info.value)


def test_ipc_on_windows_is_rejected_with_the_tcp_alternative():
    config = {**ZMQ, "protocol": "ipc", "address": "ipc:///tmp/apiary.sock"}
    with pytest.raises(ConfigError, match="'protocol'.*tcp://127.0.0.1:PORT"):
        TransportFactory.from_config(config, platform="win32")
    with pytest.raises(ValueError, match="tcp://127.0.0.1:PORT"):
        local_address("ipc", "x", platform="win32")
    with pytest.raises(ValueError, match="not available on Windows"):
        check_address("ipc:///tmp/a.sock", bind=True, platform="win32")


def test_local_address_per_protocol(ipc_dir):
    assert local_address("tcp", "x") == "tcp://127.0.0.1:*"
    assert local_address("inproc", "a b/c") == "inproc://apiary-a-b-c"
    assert local_address("ipc", "events", directory=ipc_dir) == f"ipc://{ipc_dir}/events.sock"
    assert local_address("ipc", "events").startswith("ipc://")
    with pytest.raises(ValueError, match="unknown protocol"):
        local_address("udp", "x")
    with pytest.raises(ValueError, match="too long"):
        local_address("ipc", "n" * 200, directory=ipc_dir)


def test_from_config_builds_bound_and_connected_transports(ipc_dir):
    bound = {"transport": "zeromq", "pattern": "pub_sub", "role": "publisher", "protocol": "ipc",
             "address": f"ipc://{ipc_dir}/ev.sock", "zeromq": {"linger_ms": 0, "high_water_mark": 5}}
    with TransportFactory.from_config(bound) as pub:
        assert type(pub).__name__ == "PublisherTransport" and pub.options.high_water_mark == 5
        sub_config = {**bound, "role": "subscriber", "zeromq": {"linger_ms": 0, "subscribe_filter": "a"}}
        with TransportFactory.from_config(sub_config) as sub:
            assert sub.get_stats()["endpoints"] == [f"ipc://{ipc_dir}/ev.sock"]
    spec = TransportFactory.parse({"transport": "zeromq", "pattern": "router_dealer", "role": "router",
                                   "protocol": "inproc", "name": "control"})
    assert (spec.mode, spec.address) == ("bind", "inproc://apiary-control")


def test_from_yaml_builds_a_transport_and_errors_name_the_file(tmp_path):
    good = tmp_path / "pipe.yaml"
    good.write_text("transport: pipe\npipe:\n  framing: line\n  command: [cat]\n")
    with TransportFactory.from_yaml(str(good)) as pipe:
        assert isinstance(pipe, PipeTransport) and pipe.framing == "line"
        pipe.send(b"through cat")
        assert pipe.receive(5) == b"through cat"
    bad = tmp_path / "bad.yaml"
    bad.write_text("transport: zeromq\npattern: push_pull\nrole: pull\nzeromq:\n  lingr_ms: 0\n")
    with pytest.raises(ConfigError, match=f"{bad}: unknown key zeromq.'lingr_ms'"):
        TransportFactory.from_yaml(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("transport: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{broken}: invalid YAML"):
        TransportFactory.from_yaml(str(broken))
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        TransportFactory.from_yaml(str(tmp_path / "missing.yaml"))


def test_options_defaults_are_documented_and_validated():
    options = TransportOptions()
    assert (options.high_water_mark, options.linger_ms, options.send_timeout_ms) == (1000, 1000, -1)
    assert options.topic_filters() == [b""]
    assert TransportOptions(subscribe_filter=["a", b"b"]).topic_filters() == [b"a", b"b"]
    with pytest.raises(ConfigError, match="subscribe_filter"):
        TransportOptions(subscribe_filter=5)
    with pytest.raises(ConfigError, match="monitor"):
        TransportOptions(monitor="yes")
    with pytest.raises(ConfigError, match="integer"):
        TransportOptions(high_water_mark=True)
    with open("docs/zeromq.md", encoding="utf-8") as handle:
        doc = handle.read()
    for name in TransportOptions.__dataclass_fields__:
        assert f"`{name}`" in doc, f"option {name} is not documented in docs/zeromq.md"


def test_missing_pyzmq_raises_import_error_with_the_install_command():
    code = ("import sys; sys.modules['zmq'] = None\n"
            "from services.transport import TransportFactory, PipeTransport\n"  # pipes work without zmq
            "try:\n"
            "    TransportFactory.from_config({'transport': 'zeromq', 'pattern': 'push_pull', 'role': 'pull'})\n"
            "except ImportError as exc: print('factory:', exc)\n"
            "try:\n"
            "    from services.transport import PushTransport\n"
            "except ImportError as exc: print('import:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "factory: transport 'zeromq' needs pyzmq: pip install pyzmq" in out
    assert "import: the ZeroMQ transport needs pyzmq: pip install pyzmq" in out
