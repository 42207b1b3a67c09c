"""An etcd v3 client over etcd's JSON gateway (`/v3/...`), for flanneld and the apiserver.

Requests go through etcd3gw (OpenStack's maintained gateway client) by default: its HTTP
session, URL building and error classes carry every call, and its transaction, lease
keep-alive/revoke and status calls are used as they are. We build the range, put and delete
requests ourselves because etcd3gw's helpers for them return only the values (`get`) or a bare
True (`put`, `delete`), dropping the header revision, `more`, `count` and `prev_kv` that the
apiserver needs for resourceVersions and paging. The watch is ours entirely (see
`netlab.etcd.watch`) because etcd3gw's watcher drops every message that is neither `created`
nor carries events, so a cancelled or compacted watch is never surfaced and its stream just
hangs.

`EtcdClient(url, keepalive=True)` sends the key-value and transaction calls (range, put,
delete, txn, compaction) over kept-alive `http.client` connections instead
(`netlab.etcd.transport`): the apiserver makes one such call per API write and needs the
per-call cost of requests' machinery gone (measured: 560 us of CPU per call through etcd3gw,
150 us this way). Same methods, same results, same errors; leases, status and health stay
with etcd3gw either way.

One `EtcdClient` is safe to share between threads (the apiserver calls it from an asyncio
thread pool): requests' connection pool and ours are thread-safe and the client keeps no
other mutable state. Every method is a blocking call bounded by the client's timeout, except
a watch's iteration, which blocks until an event arrives or `Watch.stop()` is called from
another thread.

Errors: an unreachable etcd is `netlab.errors.Unavailable` naming the URL; a compacted revision
is `Compacted`; a missing lease is `LeaseNotFound`; anything else etcd refuses is `EtcdError`
with etcd's message.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import orjson
import requests
import requests.adapters
from etcd3gw import exceptions as gw_errors
from etcd3gw.client import Etcd3Client
from etcd3gw.lease import Lease as GwLease

from netlab.errors import ConfigError, Unavailable
from netlab.etcd.errors import Compacted, EtcdError, LeaseNotFound
from netlab.etcd.transport import KeepAlivePool
from netlab.etcd.types import (
    CasResult,
    DeleteResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    PutResult,
    RangeResult,
    Status,
    TxnResult,
    b64,
    key_bytes,
    key_str,
    prefix_end,
    to_int,
    unb64,
)
from netlab.etcd.watch import Watch

DEFAULT_URL = "http://127.0.0.1:2379"
DEFAULT_TIMEOUT = 10.0

# gRPC status codes etcd puts in the gateway's error body
_GRPC_OUT_OF_RANGE = 11
_GRPC_NOT_FOUND = 5


def parse_url(url: str) -> tuple[str, int]:
    """`http://host:port` -> (host, port); anything else is a ConfigError naming the URL."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"invalid etcd URL {url!r}: expected http://HOST:PORT")
    return parts.hostname, port


# Transactions -----------------------------------------------------------------------------

_RESULTS = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


@dataclass(frozen=True)
class Compare:
    """One comparison of a transaction, e.g. `Compare.mod(key, "==", 0)` (key absent)."""

    key: bytes
    target: Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
    op: str
    value: int | bytes

    def to_json(self) -> dict[str, Any]:
        field = {
            "VERSION": "version",
            "CREATE": "create_revision",
            "MOD": "mod_revision",
            "VALUE": "value",
            "LEASE": "lease",
        }[self.target]
        v = b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return {"key": b64(self.key), "target": self.target, "result": _RESULTS[self.op], field: v}

    @classmethod
    def version(cls, key: str | bytes, op: str, n: int) -> Compare:
        return cls(key_bytes(key), "VERSION", _check_op(op), n)

    @classmethod
    def create(cls, key: str | bytes, op: str, revision: int) -> Compare:
        return cls(key_bytes(key), "CREATE", _check_op(op), revision)

    @classmethod
    def mod(cls, key: str | bytes, op: str, revision: int) -> Compare:
        return cls(key_bytes(key), "MOD", _check_op(op), revision)

    @classmethod
    def value_of(cls, key: str | bytes, op: str, value: str | bytes) -> Compare:
        return cls(key_bytes(key), "VALUE", _check_op(op), key_bytes(value))

    @classmethod
    def lease(cls, key: str | bytes, op: str, lease_id: int) -> Compare:
        return cls(key_bytes(key), "LEASE", _check_op(op), lease_id)


def _check_op(op: str) -> str:
    if op not in _RESULTS:
        raise ValueError(f"compare operator must be one of {', '.join(_RESULTS)}, not {op!r}")
    return op


@dataclass(frozen=True)
class Op:
    """One request inside a transaction: `Op.get`, `Op.put` or `Op.delete`."""

    body: dict[str, Any]

    @classmethod
    def get(
        cls,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> Op:
        return cls({"request_range": _range_body(key, range_end, prefix, limit, 0, keys_only, count_only)})

    @classmethod
    def put(cls, key: str | bytes, value: str | bytes, *, lease: int = 0, prev_kv: bool = False) -> Op:
        return cls({"request_put": _put_body(key, value, lease, prev_kv)})

    @classmethod
    def delete(
        cls,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> Op:
        return cls({"request_delete_range": _delete_body(key, range_end, prefix, prev_kv)})


def _range_end(key: str | bytes, range_end: str | bytes | None, prefix: bool) -> bytes | None:
    if prefix:
        if range_end is not None:
            raise ValueError("give either prefix=True or range_end, not both")
        return prefix_end(key)
    return key_bytes(range_end) if range_end is not None else None


def _range_body(
    key: str | bytes,
    range_end: str | bytes | None,
    prefix: bool,
    limit: int,
    revision: int,
    keys_only: bool,
    count_only: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key_bytes(key))}
    end = _range_end(key, range_end, prefix)
    if end is not None:
        body["range_end"] = b64(end)
    if limit:
        body["limit"] = str(limit)
    if revision:
        body["revision"] = str(revision)
    if keys_only:
        body["keys_only"] = True
    if count_only:
        body["count_only"] = True
    return body


def _put_body(key: str | bytes, value: str | bytes, lease: int, prev_kv: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key_bytes(key)), "value": b64(key_bytes(value))}
    if lease:
        body["lease"] = str(lease)
    if prev_kv:
        body["prev_kv"] = True
    return body


def _delete_body(
    key: str | bytes, range_end: str | bytes | None, prefix: bool, prev_kv: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key_bytes(key))}
    end = _range_end(key, range_end, prefix)
    if end is not None:
        body["range_end"] = b64(end)
    if prev_kv:
        body["prev_kv"] = True
    return body


# The client -------------------------------------------------------------------------------


class EtcdClient:
    """A connection to one etcd endpoint (`http://host:port`). Use as a context manager."""

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT, *, keepalive: bool = False
    ) -> None:
        self.host, self.port = parse_url(url)
        self.url = f"http://{self.host}:{self.port}"
        self.timeout = timeout
        session = requests.Session()
        # etcd is addressed directly: no proxy from the environment, no ~/.netrc; this also
        # spares requests a dozen environment and file lookups per call
        session.trust_env = False
        # room for a thread pool's worth of concurrent requests without re-connecting
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=32)
        session.mount("http://", adapter)
        self._gw = Etcd3Client(
            host=self.host, port=self.port, timeout=timeout, api_path="/v3/", session=session
        )
        self._pool = KeepAlivePool(self.host, self.port, timeout) if keepalive else None

    def close(self) -> None:
        self._gw.session.close()
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EtcdClient({self.url!r})"

    # transport ----------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = self._gw.post(self._gw.get_url(path), json=body)
        except gw_errors.Etcd3Exception as e:
            raise self._translate(e) from None
        return result if isinstance(result, dict) else {}

    def _kv(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A key-value or transaction call, on the kept-alive transport when there is one."""
        if self._pool is None:
            return self._post(path, body)
        try:
            code, data = self._pool.post("/v3/" + path, orjson.dumps(body))
        except (OSError, http.client.HTTPException) as e:
            reason = _short_reason(str(e) or repr(e))
            raise Unavailable(f"etcd at {self.url} is unreachable: {reason}") from None
        text = data.decode("utf-8", "replace")
        if code == 200:
            try:
                result = orjson.loads(data)
            except ValueError:
                raise EtcdError(f"etcd at {self.url}: malformed answer {text[:200]!r}") from None
            return result if isinstance(result, dict) else {}
        # the statuses etcd3gw maps to its connection errors are etcd being unavailable
        raise self._failure(text, unavailable=code in (503, 408, 504))

    def _translate(self, e: gw_errors.Etcd3Exception) -> Exception:
        unavailable = isinstance(e, gw_errors.ConnectionFailedError | gw_errors.ConnectionTimeoutError)
        return self._failure(e.detail_text or "", unavailable=unavailable)

    def _failure(self, text: str, *, unavailable: bool) -> Exception:
        """The netlab error for an etcd failure: `text` is etcd's body or the connection error."""
        if unavailable:
            try:
                # etcd itself answered 503 (e.g. no leader yet): its body is JSON
                message = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                message = _short_reason(text)
            return Unavailable(f"etcd at {self.url} is unreachable: {message}")
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        message = (body.get("message") or body.get("error") or text).strip()
        code = body.get("code")
        if code == _GRPC_OUT_OF_RANGE and "compacted" in message:
            return Compacted(f"etcd at {self.url}: {message}")
        if code == _GRPC_NOT_FOUND and "lease not found" in message:
            return LeaseNotFound(f"etcd at {self.url}: {message}")
        return EtcdError(f"etcd at {self.url}: {message or 'request refused'}")

    # key-value ----------------------------------------------------------------------------

    def range(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        """Keys from `key` up to `range_end` (exclusive), or every key under `key` with `prefix`.

        `revision` reads the store as it was then (Compacted when too old); `limit` caps the
        number of kvs and sets `more` when there were more; `count` is the total in range.
        Results are sorted by key (etcd's default).
        """
        body = _range_body(key, range_end, prefix, limit, revision, keys_only, count_only)
        return RangeResult.from_json(self._kv("kv/range", body))

    def get(self, key: str | bytes, revision: int = 0) -> KeyValue | None:
        kvs = self.range(key, revision=revision).kvs
        return kvs[0] if kvs else None

    def put(
        self, key: str | bytes, value: str | bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        return PutResult.from_json(self._kv("kv/put", _put_body(key, value, lease, prev_kv)))

    def delete(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        return DeleteResult.from_json(
            self._kv("kv/deleterange", _delete_body(key, range_end, prefix, prev_kv))
        )

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [o.body for o in success],
            "failure": [o.body for o in failure],
        }
        if self._pool is not None:
            return TxnResult.from_json(self._kv("kv/txn", body))
        try:
            raw = self._gw.transaction(body)
        except gw_errors.Etcd3Exception as e:
            raise self._translate(e) from None
        return TxnResult.from_json(dict(raw))

    def _cas(self, compare: Compare, op: Op, key: str | bytes) -> CasResult:
        r = self.txn([compare], [op], [Op.get(key)])
        first = r.responses[0] if r.responses else None
        if r.succeeded:
            prev = first.prev_kv if isinstance(first, PutResult) else None
            if isinstance(first, DeleteResult) and first.prev_kvs:
                prev = first.prev_kvs[0]
            return CasResult(True, r.revision, prev_kv=prev)
        current = first.kvs[0] if isinstance(first, RangeResult) and first.kvs else None
        return CasResult(False, r.revision, current=current)

    def create(self, key: str | bytes, value: str | bytes, *, lease: int = 0) -> CasResult:
        """Put `key` only if it does not exist (its mod revision is 0)."""
        return self._cas(Compare.mod(key, "==", 0), Op.put(key, value, lease=lease), key)

    def update(self, key: str | bytes, value: str | bytes, mod_revision: int, *, lease: int = 0) -> CasResult:
        """Put `key` only if its mod revision is still `mod_revision` (compare-and-swap)."""
        return self._cas(
            Compare.mod(key, "==", mod_revision), Op.put(key, value, lease=lease, prev_kv=True), key
        )

    def delete_if(self, key: str | bytes, mod_revision: int) -> CasResult:
        """Delete `key` only if its mod revision is still `mod_revision`."""
        return self._cas(Compare.mod(key, "==", mod_revision), Op.delete(key, prev_kv=True), key)

    def compact(self, revision: int, physical: bool = True) -> None:
        """Forget history before `revision`. Compacted when it already was compacted that far."""
        self._kv("kv/compaction", {"revision": str(revision), "physical": physical})

    # leases -------------------------------------------------------------------------------

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrant:
        """A new etcd lease of `ttl` seconds (`lease_id` 0: etcd picks the id)."""
        d = self._post("lease/grant", {"TTL": str(ttl), "ID": str(lease_id)})
        if d.get("error"):
            raise EtcdError(f"etcd at {self.url}: cannot grant lease: {d['error']}")
        return LeaseGrant(id=to_int(d.get("ID")), ttl=to_int(d.get("TTL")))

    def lease_revoke(self, lease_id: int) -> bool:
        """Revoke the lease and delete its keys. False when it did not exist (any more)."""
        try:
            GwLease(lease_id, self._gw).revoke()
        except gw_errors.Etcd3Exception as e:
            err = self._translate(e)
            if isinstance(err, LeaseNotFound):
                return False
            raise err from None
        return True

    def lease_keepalive(self, lease_id: int) -> int:
        """Refresh the lease to its full TTL; returns that TTL. LeaseNotFound once it expired."""
        try:
            ttl = GwLease(lease_id, self._gw).refresh()
        except gw_errors.Etcd3Exception as e:
            raise self._translate(e) from None
        if ttl <= 0:
            raise LeaseNotFound(f"etcd at {self.url}: lease {lease_id:x} not found (expired or revoked)")
        return ttl

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseInfo:
        d = self._post("lease/timetolive", {"ID": str(lease_id), "keys": keys})
        return LeaseInfo(
            id=to_int(d.get("ID")),
            ttl=to_int(d.get("TTL")),
            granted_ttl=to_int(d.get("grantedTTL")),
            keys=[key_str(unb64(k)) for k in d.get("keys") or []],
        )

    # cluster ------------------------------------------------------------------------------

    def status(self) -> Status:
        try:
            d: dict[str, Any] = dict(self._gw.status())
        except gw_errors.Etcd3Exception as e:
            raise self._translate(e) from None
        header = d.get("header") or {}
        return Status(
            version=str(d.get("version", "")),
            revision=to_int(header.get("revision")),
            db_size=to_int(d.get("dbSize")),
            leader=to_int(d.get("leader")),
            member_id=to_int(header.get("member_id")),
            raft_index=to_int(d.get("raftIndex")),
        )

    def healthy(self, timeout: float = 2.0) -> bool:
        """etcd's own /health check (a quorum read); never raises."""
        try:
            r = self._gw.session.get(f"{self.url}/health", timeout=timeout)
            return r.status_code == 200 and r.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def check(self) -> None:
        """Raise Unavailable (naming the URL) unless etcd answers and is healthy."""
        if not self.healthy(timeout=self.timeout):
            self.status()  # raises the precise reason when it is unreachable
            raise Unavailable(f"etcd at {self.url} answers but is not healthy")

    # watch --------------------------------------------------------------------------------

    def watch(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
    ) -> Watch:
        """Open a watch; it is established (etcd said `created`) when this returns.

        Iterate it for `Event`s and `Progress` notes; see `netlab.etcd.watch.Watch`.
        """
        end = _range_end(key, range_end, prefix)
        return Watch(
            self.host,
            self.port,
            key_bytes(key),
            end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            connect_timeout=self.timeout,
        )


def _short_reason(text: str) -> str:
    """requests' connection errors are long reprs; keep the part a user can act on."""
    for needle, short in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("No route to host", "no route to host"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed"),
        ("closed connection without response", "connection closed"),
    ):
        if needle in text:
            return short
    return text.splitlines()[0][:120] if text else "no answer"
