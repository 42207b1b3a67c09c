"""Plain data returned by the etcd client, decoded from the v3 JSON gateway.

The gateway speaks protobuf-as-JSON: keys and values are base64, int64 fields are strings, and
fields at their default value (0, false, empty) are left out. Everything here is decoded once,
at the edge, into typed values with defaults filled in, so no caller ever sees a missing
`succeeded` or a string revision.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def to_int(value: Any) -> int:
    """An int64 field: a JSON string, a number, or absent (the proto3 default 0)."""
    return int(value) if value not in (None, "") else 0


def key_str(raw: bytes) -> str:
    # keys are text in every netlab use; surrogateescape keeps odd bytes round-trippable
    return raw.decode("utf-8", "surrogateescape")


def key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


def prefix_end(prefix: str | bytes) -> bytes:
    """The `range_end` that selects every key starting with `prefix` (etcd's rule).

    The last byte below 0xff is incremented and the rest dropped; a prefix of only 0xff bytes
    (or an empty one) means "to the end of the keyspace", spelled as a single NUL byte.
    """
    raw = bytearray(key_bytes(prefix))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyValue:
        return cls(
            key=key_str(unb64(d.get("key"))),
            value=unb64(d.get("value")),
            create_revision=to_int(d.get("create_revision")),
            mod_revision=to_int(d.get("mod_revision")),
            version=to_int(d.get("version")),
            lease=to_int(d.get("lease")),
        )


def header_revision(d: dict[str, Any]) -> int:
    return to_int((d.get("header") or {}).get("revision"))


@dataclass(frozen=True)
class RangeResult:
    """A range read. `revision` is the store revision the read was served at."""

    kvs: list[KeyValue]
    revision: int
    more: bool
    count: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RangeResult:
        return cls(
            kvs=[KeyValue.from_json(kv) for kv in d.get("kvs") or []],
            revision=header_revision(d),
            more=bool(d.get("more")),
            count=to_int(d.get("count")),
        )


@dataclass(frozen=True)
class PutResult:
    revision: int  # the revision the put created: the key's new mod_revision
    prev_kv: KeyValue | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PutResult:
        prev = d.get("prev_kv")
        return cls(revision=header_revision(d), prev_kv=KeyValue.from_json(prev) if prev else None)


@dataclass(frozen=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list[KeyValue] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeleteResult:
        return cls(
            revision=header_revision(d),
            deleted=to_int(d.get("deleted")),
            prev_kvs=[KeyValue.from_json(kv) for kv in d.get("prev_kvs") or []],
        )


OpResult = RangeResult | PutResult | DeleteResult


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[OpResult]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TxnResult:
        revision = header_revision(d)
        out: list[OpResult] = []
        for r in d.get("responses") or []:
            # each sub-response has no header of its own in the gateway's JSON
            if "response_range" in r:
                out.append(RangeResult.from_json({"header": d.get("header"), **r["response_range"]}))
            elif "response_put" in r:
                out.append(PutResult.from_json({"header": d.get("header"), **r["response_put"]}))
            elif "response_delete_range" in r:
                out.append(DeleteResult.from_json({"header": d.get("header"), **r["response_delete_range"]}))
        return cls(succeeded=bool(d.get("succeeded")), revision=revision, responses=out)


@dataclass(frozen=True)
class CasResult:
    """Outcome of a compare-and-set helper (create, update, delete_if).

    On success `revision` is the revision the write created (the key's new mod_revision) and
    `prev_kv` the value it replaced, if any. On failure `current` is the key as it is now, or
    None when it does not exist, read in the same transaction as the failed compare.
    """

    succeeded: bool
    revision: int
    current: KeyValue | None = None
    prev_kv: KeyValue | None = None


@dataclass(frozen=True)
class LeaseGrant:
    id: int
    ttl: int  # as granted; etcd may round a very short TTL up


@dataclass(frozen=True)
class LeaseInfo:
    id: int
    ttl: int  # seconds left; -1 when the lease has expired or never existed
    granted_ttl: int
    keys: list[str]


@dataclass(frozen=True)
class Status:
    version: str
    revision: int
    db_size: int
    leader: int
    member_id: int
    raft_index: int


@dataclass(frozen=True)
class Event:
    """One change seen by a watch. DELETE events carry only the key and mod_revision in `kv`."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        prev = d.get("prev_kv")
        # proto3 leaves out the default enum value, so a PUT has no "type" at all
        kind: Literal["PUT", "DELETE"] = "DELETE" if d.get("type") == "DELETE" else "PUT"
        return cls(
            type=kind,
            kv=KeyValue.from_json(d.get("kv") or {}),
            prev_kv=KeyValue.from_json(prev) if prev else None,
        )


@dataclass(frozen=True)
class Progress:
    """A progress notification: every change up to `revision` has been delivered."""

    revision: int
