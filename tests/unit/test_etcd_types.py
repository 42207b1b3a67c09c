"""Decoding the etcd gateway's JSON: base64, int64 strings and omitted proto3 defaults."""

from __future__ import annotations

import pytest

from netlab.errors import ConfigError
from netlab.etcd import Compare, Event, Op, RangeResult, TxnResult, parse_url, prefix_end
from netlab.etcd.types import KeyValue, b64


def test_prefix_end() -> None:
    assert prefix_end("/registry/pods/") == b"/registry/pods0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end("") == b"\0"


def test_omitted_defaults() -> None:
    r = RangeResult.from_json({"header": {"revision": "7"}})
    assert r == RangeResult(kvs=[], revision=7, more=False, count=0)
    kv = KeyValue.from_json({"key": b64("/a"), "mod_revision": "5"})
    assert kv == KeyValue("/a", b"", 0, 5, 0, 0)
    lost = TxnResult.from_json(
        {
            "header": {"revision": "9"},
            "responses": [{"response_range": {"kvs": [{"key": b64("k"), "value": b64("v")}], "count": "1"}}],
        }
    )
    assert lost.succeeded is False and lost.revision == 9
    assert isinstance(lost.responses[0], RangeResult) and lost.responses[0].kvs[0].value == b"v"


def test_event_types() -> None:
    put = Event.from_json({"kv": {"key": b64("k"), "value": b64("v"), "mod_revision": "3"}})
    assert put.type == "PUT" and put.prev_kv is None
    dele = Event.from_json(
        {"type": "DELETE", "kv": {"key": b64("k"), "mod_revision": "4"}, "prev_kv": {"key": b64("k")}}
    )
    assert dele.type == "DELETE" and dele.kv.mod_revision == 4 and dele.prev_kv is not None


def test_txn_builders() -> None:
    assert Compare.mod("k", "==", 0).to_json() == {
        "key": b64("k"),
        "target": "MOD",
        "result": "EQUAL",
        "mod_revision": "0",
    }
    assert Compare.value_of("k", "!=", "x").to_json()["value"] == b64("x")
    with pytest.raises(ValueError):
        Compare.version("k", "=", 0)
    assert Op.put("k", b"v", lease=5).body == {
        "request_put": {"key": b64("k"), "value": b64("v"), "lease": "5"}
    }
    assert Op.get("/p/", prefix=True).body == {"request_range": {"key": b64("/p/"), "range_end": b64("/p0")}}


def test_parse_url() -> None:
    assert parse_url("http://127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_url("http://localhost:22379/") == ("localhost", 22379)
    for bad in ("127.0.0.1:2379", "https://h:1", "http://h", "http://h:x", "http://h:1/v3"):
        with pytest.raises(ConfigError, match="invalid etcd URL"):
            parse_url(bad)
