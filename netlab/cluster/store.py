"""The etcd-backed object store: JSON objects under `/registry/...`, versioned by etcd revisions.

An object's `resourceVersion` is its key's `mod_revision`; a list's is the read's header
revision. Writes are compare-on-revision transactions (create = "absent", update/delete = "mod
revision unchanged"), so a stale write is a 409 and no write is ever lost, even with several
writers. `resourceVersion` is stripped before storing and filled in on read, as upstream does.

The etcd client is synchronous (`netlab.etcd`); the apiserver is asyncio, so every call runs on
a small thread pool. Watching lives in `netlab.cluster.watchcache`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from netlab.cluster import codec, status
from netlab.cluster.resources import Resource
from netlab.cluster.status import ApiError
from netlab.etcd import Compacted, EtcdClient, KeyValue, prefix_end

Obj = dict[str, Any]
T = TypeVar("T")

CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter."
)


def encode(obj: Obj) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return codec.dumps(obj)


def decode(kv: KeyValue, revision: int | None = None) -> Obj:
    obj: Obj = codec.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(
        revision if revision is not None else kv.mod_revision
    )
    return obj


def parse_rv(text: str | None, what: str = "resourceVersion") -> int:
    if text in (None, ""):
        return 0
    try:
        value = int(str(text))
    except ValueError:
        raise status.bad_request(f'invalid {what}: "{text}"') from None
    if value < 0:
        raise status.bad_request(f'invalid {what}: "{text}"')
    return value


def make_continue(revision: int, next_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": next_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        rv, start = int(doc["rv"]), str(doc["start"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise status.bad_request("continue key is not valid: invalid token") from None
    if not start.startswith(prefix) or rv <= 0:
        raise status.bad_request("continue key is not valid: not for this list")
    return rv, start


@dataclass
class Page:
    items: list[Obj]
    revision: int
    continue_token: str


class Store:
    def __init__(self, etcd: EtcdClient, threads: int = 16) -> None:
        self.etcd = etcd
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="etcd")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def revision(self) -> int:
        r = await self.call(self.etcd.range, "/registry/", count_only=True, prefix=True)
        return r.revision

    async def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        kv = await self.call(self.etcd.get, res.etcd_key(namespace, name))
        if kv is None:
            raise status.not_found(res.qualified, name)
        return decode(kv)

    async def get_or_none(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        kv = await self.call(self.etcd.get, res.etcd_key(namespace, name))
        return decode(kv) if kv is not None else None

    async def list(
        self,
        res: Resource,
        namespace: str | None,
        *,
        keep: Callable[[Obj], bool] = lambda o: True,
        limit: int = 0,
        continue_token: str = "",
        revision: int = 0,
    ) -> Page:
        """One page of objects that `keep` accepts, read at one revision (consistent pages)."""
        prefix = res.prefix(namespace)
        end = prefix_end(prefix)
        start = prefix
        if continue_token:
            revision, start = parse_continue(continue_token, prefix)
        items: list[Obj] = []
        try:
            while True:
                want = (limit - len(items)) if limit else 0
                r = await self.call(self.etcd.range, start, end, limit=want, revision=revision)
                revision = revision or r.revision
                for kv in r.kvs:
                    obj = decode(kv)
                    if keep(obj):
                        items.append(obj)
                if not r.more or not r.kvs:
                    return Page(items, revision, "")
                start = r.kvs[-1].key + "\0"
                if limit and len(items) >= limit:
                    return Page(items, revision, make_continue(revision, start))
        except Compacted:
            if continue_token:
                raise status.gone(CONTINUE_TOO_OLD) from None
            raise status.gone(f"too old resource version: {revision}") from None

    async def create(self, res: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        r = await self.call(self.etcd.create, res.etcd_key(meta.get("namespace"), meta["name"]), encode(obj))
        if not r.succeeded:
            raise status.already_exists(res.qualified, meta["name"])
        meta["resourceVersion"] = str(r.revision)
        return obj

    async def update(self, res: Resource, obj: Obj, mod_revision: int) -> Obj:
        """Write `obj` if its key is still at `mod_revision`; 409 Conflict otherwise."""
        meta = obj["metadata"]
        r = await self.call(
            self.etcd.update, res.etcd_key(meta.get("namespace"), meta["name"]), encode(obj), mod_revision
        )
        if not r.succeeded:
            if r.current is None:
                raise status.not_found(res.qualified, meta["name"])
            raise status.conflict(res.qualified, meta["name"], status.STALE)
        meta["resourceVersion"] = str(r.revision)
        return obj

    async def delete(self, res: Resource, obj: Obj) -> Obj:
        """Remove `obj` if it is unchanged since it was read; 409 Conflict otherwise."""
        meta = obj["metadata"]
        expected = parse_rv(meta.get("resourceVersion"))
        r = await self.call(self.etcd.delete_if, res.etcd_key(meta.get("namespace"), meta["name"]), expected)
        if not r.succeeded:
            if r.current is None:
                raise status.not_found(res.qualified, meta["name"])
            raise status.conflict(res.qualified, meta["name"], status.STALE)
        return obj

    async def compact(self, revision: int) -> None:
        with contextlib.suppress(Compacted):  # already compacted at least that far
            await self.call(self.etcd.compact, revision)


def is_conflict(e: ApiError) -> bool:
    return e.code == 409 and e.reason == "Conflict"
