"""Toxiproxy's HTTP API shape: the PyPI client `toxiproxy-python` drives the server unmodified, and bad
input gets a 4xx whose message names the field."""
from __future__ import annotations

import time

import pytest
import requests

from tests.toxiproxy.conftest import connect, round_trip

toxiproxy = pytest.importorskip("toxiproxy", reason="toxiproxy-python (requirements/dev.txt) is not installed")


def test_toxiproxy_python_client_drives_it_unmodified(toxi, upstream):
    _, api = toxi
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer("127.0.0.1", int(api.rsplit(":", 1)[1]))
    assert server.running()
    assert b"version" in server.version()
    proxy = server.create(upstream=upstream.addr, name="echo")
    port = int(proxy.listen.rsplit(":", 1)[1])
    assert port > 0 and proxy.enabled is True
    assert set(server.proxies()) == {"echo"}
    with pytest.raises(toxiproxy.exceptions.ProxyExists):
        server.create(upstream=upstream.addr, name="echo")

    proxy.add_toxic(type="latency", attributes={"latency": 60})
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes["latency"] == 60
    with connect(port) as s:
        assert round_trip(s) >= 0.058
    assert proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}

    with proxy.down():
        with pytest.raises(ConnectionRefusedError):
            connect(port)
    with connect(port) as s:
        assert round_trip(s) < 0.05

    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
    assert server.reset()
    assert proxy.toxics() == {}
    assert server.destroy(proxy)
    assert server.proxies() == {}


def test_raw_api_shape(toxi, upstream):
    _, api = toxi
    r = requests.post(api + "/proxies", json={"name": "a", "upstream": upstream.addr}, timeout=5)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"name", "listen", "upstream", "enabled", "toxics"} and body["toxics"] == []
    r = requests.post(api + "/proxies/a/toxics", json={"type": "bandwidth", "stream": "upstream",
                                                      "attributes": {"rate": 100}}, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"name": "bandwidth_upstream", "type": "bandwidth", "stream": "upstream", "toxicity": 1.0,
                        "attributes": {"rate": 100}}
    r = requests.post(api + "/proxies/a/toxics/bandwidth_upstream", json={"attributes": {"rate": 7}, "toxicity": 0.5},
                      timeout=5)
    assert r.status_code == 200 and r.json()["attributes"]["rate"] == 7 and r.json()["toxicity"] == 0.5
    assert requests.get(api + "/proxies/a/toxics/bandwidth_upstream", timeout=5).json()["attributes"] == {"rate": 7}
    assert requests.get(api + "/proxies/a", timeout=5).json()["toxics"][0]["name"] == "bandwidth_upstream"
    assert requests.delete(api + "/proxies/a/toxics/bandwidth_upstream", timeout=5).status_code == 204
    assert requests.get(api + "/proxies", timeout=5).json()["a"]["toxics"] == []
    assert requests.delete(api + "/proxies/a", timeout=5).status_code == 204
    assert requests.get(api + "/proxies/a", timeout=5).status_code == 404
    assert requests.get(api + "/version", timeout=5).json()["version"]


BAD = [
    ("/proxies", {"upstream": "127.0.0.1:1"}, 400, "name"),
    ("/proxies", {"name": "b"}, 400, "upstream"),
    ("/proxies", {"name": "b", "upstream": "nowhere"}, 400, "upstream"),
    ("/proxies", {"name": "b", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:99999"}, 400, "listen"),
    ("/proxies", {"name": "b", "upstream": "127.0.0.1:1", "enabled": "yes"}, 400, "enabled"),
    ("/proxies", {"name": "p", "upstream": "127.0.0.1:1"}, 409, "exists"),
    ("/proxies/p/toxics", {"type": "lag"}, 400, "type"),
    ("/proxies/p/toxics", {"type": "latency", "stream": "sideways"}, 400, "stream"),
    ("/proxies/p/toxics", {"type": "latency", "toxicity": 2}, 400, "toxicity"),
    ("/proxies/p/toxics", {"type": "latency", "attributes": {"latency": -5}}, 400, "attributes.latency"),
    ("/proxies/p/toxics", {"type": "latency", "attributes": {"rate": 5}}, 400, "attributes.rate"),
    ("/proxies/p/toxics", {"type": "latency", "attributes": "fast"}, 400, "attributes"),
    ("/proxies/nope/toxics", {"type": "latency"}, 404, "proxy not found"),
    ("/proxies/p/toxics/nope", {"attributes": {}}, 404, "toxic not found"),
]


@pytest.mark.parametrize("path,body,status,field", BAD, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_4xx_naming_the_field(proxy, path, body, status, field):
    api, _ = proxy
    r = requests.post(api + path, json=body, timeout=5)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and field in r.json()["error"], r.text


def test_duplicate_toxic_is_409_and_bad_json_is_400(proxy):
    api, _ = proxy
    assert requests.post(api + "/proxies/p/toxics", json={"type": "latency"}, timeout=5).status_code == 200
    r = requests.post(api + "/proxies/p/toxics", json={"type": "latency"}, timeout=5)
    assert r.status_code == 409 and "latency_downstream" in r.json()["error"]
    r = requests.post(api + "/proxies/p/toxics", data=b"{not json", timeout=5)
    assert r.status_code == 400 and "body" in r.json()["error"]


def test_upstream_down_closes_the_client(toxi):
    server, api = toxi
    dead = requests.post(api + "/proxies", json={"name": "d", "upstream": "127.0.0.1:1"}, timeout=5).json()
    with connect(int(dead["listen"].rsplit(":", 1)[1])) as s:
        t0 = time.monotonic()
        assert s.recv(10) == b""
    assert time.monotonic() - t0 < 1
