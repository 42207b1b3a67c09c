"""What each verb does to an object: the apiserver's semantics between HTTP and the store.

Create fills metadata and defaults, validates, allocates service addresses and writes if absent.
Update and patch read, apply, validate and write on the read revision; a client-supplied
resourceVersion that is stale is a 409, and server-side mutations (patches, status, scale,
binding) retry on conflict, serialized per key inside this process so a thousand concurrent
patches of one object cost a thousand writes, not a storm of retries. Delete implements
preconditions, graceful pod deletion, finalizers and the three propagation policies (the
collecting itself is `netlab.cluster.gc`). Status, scale and binding subresources live here too.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import secrets
import uuid
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from netlab.cluster import defaults, patch, resources, status, validation
from netlab.cluster.allocators import ServiceAllocator
from netlab.cluster.resources import Resource
from netlab.cluster.selectors import selector_to_string
from netlab.cluster.status import ApiError
from netlab.cluster.store import Page, Store, is_conflict, parse_rv

Obj = dict[str, Any]

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_RETRIES = 20
_GENERATION_KINDS = ("deployments", "replicasets", "pods", "services", "nodes", "namespaces")
_IMMUTABLE_SELECTOR = ("deployments", "replicasets")


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)


def _rand_suffix(n: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # upstream's: no vowels, no look-alikes
    return "".join(secrets.choice(alphabet) for _ in range(n))


class Registry:
    def __init__(self, store: Store, allocator: ServiceAllocator) -> None:
        self.store = store
        self.allocator = allocator
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.on_namespace_deleting: Callable[[str], None] | None = None
        # the watch caches, when there are: saves an etcd read per create, update and patch
        self.cached_object: Callable[[Resource, str | None, str], Obj | None] = lambda res, ns, name: None
        # the newest object this apiserver wrote per key: a better first guess than a cache that
        # has not yet seen our own last write (bounded; only ever a guess, checked by the CAS)
        self._recent: collections.OrderedDict[str, Obj] = collections.OrderedDict()

    def _lock(self, res: Resource, ns: str | None, name: str) -> asyncio.Lock:
        key = res.etcd_key(ns, name)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # first guesses ---------------------------------------------------------------------------

    def _remember(self, res: Resource, obj: Obj) -> None:
        meta = obj["metadata"]
        key = res.etcd_key(meta.get("namespace"), meta["name"])
        self._recent[key] = obj
        self._recent.move_to_end(key)
        while len(self._recent) > 4096:
            self._recent.popitem(last=False)

    def _forget(self, res: Resource, obj: Obj) -> None:
        meta = obj["metadata"]
        self._recent.pop(res.etcd_key(meta.get("namespace"), meta["name"]), None)

    async def _current(self, res: Resource, ns: str | None, name: str, fresh: bool) -> tuple[Obj, bool]:
        """The object to start a write from, and whether it is only a guess.

        A guess (our last write, or the watch cache) saves a read; when it is stale, the
        compare-on-revision write fails and the caller retries with `fresh` (an etcd read)."""
        if not fresh and (guess := self._guess(res, ns, name)) is not None:
            return guess, True
        return await self.store.get(res, ns, name), False

    def _guess(self, res: Resource, ns: str | None, name: str) -> Obj | None:
        found = (self._recent.get(res.etcd_key(ns, name)), self.cached_object(res, ns, name))
        candidates = [o for o in found if o]
        if not candidates:
            return None
        return max(candidates, key=lambda o: parse_rv(o["metadata"].get("resourceVersion")))

    # shared pieces ---------------------------------------------------------------------------

    def _check_type(self, res: Resource, body: Any, expect_kind: str | None = None) -> Obj:
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request must be a JSON or YAML object")
        kind = expect_kind or res.kind
        if body.get("kind") not in (None, "", kind):
            raise status.bad_request(
                f"the kind of the provided object ({body.get('kind')}) does not match the resource ({kind})"
            )
        if expect_kind is None and body.get("apiVersion") not in (None, "", res.api_version):
            raise status.bad_request(
                f"the apiVersion of the provided object ({body.get('apiVersion')}) does not "
                f"match the resource ({res.api_version})"
            )
        if not isinstance(body.get("metadata", {}), dict):
            raise status.bad_request("metadata must be an object")
        return body

    def _validate(self, res: Resource, obj: Obj) -> None:
        causes = validation.validate(res.plural, obj, res.namespaced)
        if causes:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise status.invalid(res.kind, res.group, str(name), causes)

    async def _namespace_ready(self, res: Resource, ns: str | None) -> None:
        if not res.namespaced:
            return
        # the newer of our own last write and the cache (a namespace this apiserver just marked
        # Terminating must refuse new content at once), else etcd
        ns_obj = self._guess(resources.NAMESPACES, None, ns or "") or await self.store.get_or_none(
            resources.NAMESPACES, None, ns or ""
        )
        if ns_obj is None:
            raise status.not_found("namespaces", ns or "")
        if (ns_obj.get("metadata") or {}).get("deletionTimestamp"):
            raise status.forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated",
                res.qualified,
            )

    # create ----------------------------------------------------------------------------------

    async def create(self, res: Resource, ns: str | None, body: Any, *, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(self._check_type(res, body))
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_rand_suffix()}"
        for k in (
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(now())
        if res.plural in _GENERATION_KINDS:
            meta["generation"] = 1
        if res.plural in ("pods", "services", "deployments", "replicasets"):
            obj["status"] = {}
        defaults.apply(res.plural, obj)
        self._validate(res, obj)
        await self._namespace_ready(res, ns)
        if res is resources.SERVICES:
            causes = self.allocator.allocate(obj)
            if causes:
                raise status.invalid(res.kind, res.group, meta["name"], causes)
        if dry_run:
            if res is resources.SERVICES:
                self.allocator.release_unused(obj, None)
            return obj
        try:
            return await self.store.create(res, obj)
        except BaseException:
            if res is resources.SERVICES:
                self.allocator.release_unused(obj, None)
            raise
        finally:
            if meta.get("resourceVersion"):
                self._remember(res, obj)

    # read ------------------------------------------------------------------------------------

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        return await self.store.get(res, ns, name)

    async def list_page(
        self,
        res: Resource,
        ns: str | None,
        keep: Callable[[Obj], bool],
        *,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        rv_match: str = "",
    ) -> Page:
        revision = 0
        if rv_match == "Exact":
            revision = parse_rv(resource_version)
            if not revision:
                raise status.bad_request("resourceVersionMatch=Exact needs a non-zero resourceVersion")
        return await self.store.list(
            res, ns, keep=keep, limit=limit, continue_token=continue_token, revision=revision
        )

    # update ----------------------------------------------------------------------------------

    def _merge_for_write(self, res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
        """The object to store when `new` replaces `old` through the main resource or /status."""
        if subresource == "status":
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = copy.deepcopy(new["status"])
            else:
                out.pop("status", None)
            # upstream lets status writers touch labels and annotations too (kubelet does)
            for k in ("labels", "annotations"):
                if k in (new.get("metadata") or {}):
                    out["metadata"][k] = copy.deepcopy(new["metadata"][k])
            return out
        out = copy.deepcopy(new)
        out["kind"], out["apiVersion"] = res.kind, res.api_version
        meta = out.setdefault("metadata", {})
        old_meta = old["metadata"]
        for k in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("managedFields", None)
        if res.has_status and "status" in old:
            out["status"] = copy.deepcopy(old["status"])
        elif res.has_status:
            out.pop("status", None)
        defaults.apply(res.plural, out)
        if res.plural in _GENERATION_KINDS:

            def body(o: Obj) -> Any:
                return {k: v for k, v in o.items() if k not in ("metadata", "status", "kind", "apiVersion")}

            if body(out) != body(old):
                meta["generation"] = int(old_meta.get("generation") or 1) + 1
        return out

    def _check_update(self, res: Resource, old: Obj, new: Obj) -> None:
        self._validate(res, new)
        causes = validation.validate_update(res.plural, old, new)
        if res.plural in _IMMUTABLE_SELECTOR:
            before = (old.get("spec") or {}).get("selector")
            after = (new.get("spec") or {}).get("selector")
            if before != after:
                causes.append(
                    status.Cause(
                        "spec.selector", f'Invalid value: "{selector_to_string(after)}": field is immutable'
                    )
                )
        if res is resources.PODS:
            before_node = (old.get("spec") or {}).get("nodeName")
            after_node = (new.get("spec") or {}).get("nodeName")
            if before_node and before_node != after_node:
                causes.append(
                    status.Cause(
                        "spec.nodeName",
                        "Forbidden: pod updates may not change nodeName",
                        "FieldValueForbidden",
                    )
                )
        if causes:
            raise status.invalid(res.kind, res.group, new["metadata"]["name"], causes)

    async def _write(self, res: Resource, old: Obj, new: Obj, *, dry_run: bool = False) -> Obj:
        """Store `new` over `old` (CAS on old's revision), or finish a deletion it completes."""
        self._check_update(res, old, new)
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not self._pod_awaits_kubelet(res, new)
        ):
            if dry_run:
                return new
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return await self._remove(res, new)
        if res is resources.SERVICES:
            causes = self.allocator.allocate(new, old)
            if causes:
                raise status.invalid(res.kind, res.group, meta["name"], causes)
        if dry_run:
            if res is resources.SERVICES:
                self.allocator.release_new(old, new)
            return new
        try:
            written = await self.store.update(res, new, parse_rv(old["metadata"]["resourceVersion"]))
        except BaseException:
            if res is resources.SERVICES:
                self.allocator.release_new(old, new)
            raise
        if res is resources.SERVICES:
            self.allocator.release_unused(old, written)
        self._remember(res, written)
        return written

    def _pod_awaits_kubelet(self, res: Resource, obj: Obj) -> bool:
        """A bound pod being deleted gracefully stays until its kubelet confirms (grace 0)."""
        meta = obj["metadata"]
        return (
            res is resources.PODS
            and bool((obj.get("spec") or {}).get("nodeName"))
            and int(meta.get("deletionGracePeriodSeconds") or 0) > 0
        )

    async def update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        new = self._check_type(res, body)
        meta = new.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise status.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if res.namespaced and meta.get("namespace") not in (None, "", ns):
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted_rv = parse_rv(meta.get("resourceVersion"))
        async with self._lock(res, ns, name):
            fresh = False
            for _ in range(_RETRIES):
                old, guessed = await self._current(res, ns, name, fresh)
                fresh = True
                if wanted_rv and wanted_rv != parse_rv(old["metadata"]["resourceVersion"]):
                    if guessed:
                        continue
                    raise status.conflict(res.qualified, name, status.STALE)
                uid = meta.get("uid")
                if uid and uid != old["metadata"].get("uid"):
                    if guessed:
                        continue
                    raise status.conflict(
                        res.qualified,
                        name,
                        f"Precondition failed: UID in precondition: {uid}, "
                        f"UID in object meta: {old['metadata'].get('uid')}",
                    )
                merged = self._merge_for_write(res, old, new, subresource)
                try:
                    return await self._write(res, old, merged, dry_run=dry_run)
                except ApiError as e:
                    if (is_conflict(e) and (guessed or not wanted_rv)) or (e.code == 404 and guessed):
                        continue
                    raise
        raise status.conflict(res.qualified, name, status.STALE)

    async def mutate(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        fn: Callable[[Obj], Obj | Awaitable[Obj]],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Read-modify-write with retries: `fn` gets a copy of the current object."""
        async with self._lock(res, ns, name):
            fresh = False
            for _ in range(_RETRIES):
                old, guessed = await self._current(res, ns, name, fresh)
                fresh = True
                try:
                    result = fn(copy.deepcopy(old))
                except ApiError:
                    if guessed:
                        continue  # judge the request against the stored object, not a guess
                    raise
                new = await result if asyncio.iscoroutine(result) else result
                assert isinstance(new, dict)
                if parse_rv((new.get("metadata") or {}).get("resourceVersion")) not in (
                    0,
                    parse_rv(old["metadata"]["resourceVersion"]),
                ):
                    if guessed:
                        continue
                    raise status.conflict(res.qualified, name, status.STALE)
                merged = self._merge_for_write(res, old, new, subresource)
                if merged == old:
                    if guessed:
                        continue  # a no-op against a guess proves nothing: check the store
                    return old  # no-op writes do not bump the resourceVersion, as upstream
                try:
                    return await self._write(res, old, merged, dry_run=dry_run)
                except ApiError as e:
                    if is_conflict(e) or (e.code == 404 and guessed):
                        continue
                    raise
        raise status.conflict(res.qualified, name, status.STALE)

    async def patch(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str = "",
    ) -> tuple[Obj, int]:
        """Apply a patch; returns the object and the HTTP code (201 when server-side apply created it)."""
        ct = content_type.split(";")[0].strip()
        if ct == patch.APPLY:
            if not field_manager:
                raise status.bad_request("PATCH with apply requires a fieldManager to be specified")
            if not isinstance(body, dict):
                raise status.bad_request("an apply patch must be an object")
            if (body.get("metadata") or {}).get("name") not in (None, name):
                raise status.bad_request("the name of the object does not match the name on the URL")
            existing = await self.store.get_or_none(res, ns, name)
            if existing is None:
                created = dict(body)
                created.setdefault("metadata", {})["name"] = name
                try:
                    return await self.create(res, ns, created, dry_run=dry_run), 201
                except ApiError as e:
                    if e.reason != "AlreadyExists":
                        raise

        def apply(old: Obj) -> Obj:
            out = patch.apply_patch(ct, old, body)
            if not isinstance(out, dict):
                raise status.bad_request("the patch did not produce an object")
            meta = out.get("metadata") or {}
            if meta.get("name") != name or (res.namespaced and meta.get("namespace") != ns):
                raise status.bad_request("a patch may not change the object's name or namespace")
            return out

        return await self.mutate(res, ns, name, apply, subresource=subresource, dry_run=dry_run), 200

    # delete ----------------------------------------------------------------------------------

    async def _remove(self, res: Resource, obj: Obj) -> Obj:
        self._forget(res, obj)
        removed = await self.store.delete(res, obj)
        if res is resources.SERVICES:
            self.allocator.release_unused(removed, None)
        return removed

    async def delete(
        self, res: Resource, ns: str | None, name: str, options: Obj, *, dry_run: bool = False
    ) -> Obj:
        grace_opt = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise status.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    status.Cause(
                        "propagationPolicy",
                        f'Unsupported value: "{policy}": supported values: "Foreground", '
                        '"Background", "Orphan"',
                        "FieldValueNotSupported",
                    )
                ],
            )
        pre = options.get("preconditions") or {}
        if res is resources.NAMESPACES and name in PROTECTED_NAMESPACES:
            raise status.forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted', "namespaces", name
            )
        async with self._lock(res, ns, name):
            fresh = False
            for _ in range(_RETRIES):
                old, guessed = await self._current(res, ns, name, fresh)
                fresh = True
                ometa = old["metadata"]
                pre_uid_bad = bool(pre.get("uid")) and pre["uid"] != ometa.get("uid")
                pre_rv_bad = bool(pre.get("resourceVersion")) and pre["resourceVersion"] != ometa.get(
                    "resourceVersion"
                )
                if guessed and (pre_uid_bad or pre_rv_bad or ometa.get("deletionTimestamp")):
                    continue  # decide these against the stored object
                if pre_uid_bad:
                    raise status.conflict(
                        res.qualified,
                        name,
                        f"Precondition failed: UID in precondition: "
                        f"{pre['uid']}, UID in object meta: {ometa.get('uid')}",
                    )
                if pre_rv_bad:
                    raise status.conflict(
                        res.qualified,
                        name,
                        f"Precondition failed: ResourceVersion in "
                        f"precondition: {pre['resourceVersion']}, ResourceVersion in object "
                        f"meta: {ometa.get('resourceVersion')}",
                    )
                new = copy.deepcopy(old)
                meta = new["metadata"]
                finalizers = list(meta.get("finalizers") or [])
                if policy == "Orphan" and "orphan" not in finalizers:
                    finalizers.append("orphan")
                elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                    finalizers.append("foregroundDeletion")
                graceful = False
                if res is resources.PODS and (new.get("spec") or {}).get("nodeName"):
                    grace = (
                        grace_opt
                        if grace_opt is not None
                        else (new.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    )
                    grace = max(int(grace), 0)
                    current = meta.get("deletionGracePeriodSeconds")
                    if grace > 0 and (current is None or grace < int(current)):
                        meta["deletionTimestamp"] = rfc3339(now() + timedelta(seconds=grace))
                        meta["deletionGracePeriodSeconds"] = grace
                        graceful = True
                    elif grace == 0:
                        meta["deletionGracePeriodSeconds"] = 0
                        meta.setdefault("deletionTimestamp", rfc3339(now()))
                    else:
                        graceful = current is not None and int(current) > 0
                if res is resources.NAMESPACES:
                    finalizers = finalizers or []
                    meta.setdefault("deletionTimestamp", rfc3339(now()))
                    meta["deletionGracePeriodSeconds"] = 0
                    new.setdefault("status", {})["phase"] = "Terminating"
                    if dry_run:
                        return new
                    try:
                        written = await self.store.update(res, new, parse_rv(ometa["resourceVersion"]))
                    except ApiError as e:
                        if is_conflict(e) or (e.code == 404 and guessed):
                            continue
                        raise
                    self._remember(res, written)
                    if self.on_namespace_deleting:
                        self.on_namespace_deleting(name)
                    return written
                if finalizers or graceful:
                    meta["finalizers"] = finalizers
                    if not finalizers:
                        meta.pop("finalizers")
                    meta.setdefault("deletionTimestamp", rfc3339(now()))
                    meta.setdefault("deletionGracePeriodSeconds", 0)
                    if new == old:
                        return old
                    if dry_run:
                        return new
                    try:
                        return await self.store.update(res, new, parse_rv(ometa["resourceVersion"]))
                    except ApiError as e:
                        if is_conflict(e) or (e.code == 404 and guessed):
                            continue
                        raise
                if dry_run:
                    return old
                try:
                    return await self._remove(res, old)
                except ApiError as e:
                    if is_conflict(e) or (e.code == 404 and guessed):
                        continue
                    raise
        raise status.conflict(res.qualified, name, status.STALE)

    async def delete_collection(
        self,
        res: Resource,
        ns: str | None,
        keep: Callable[[Obj], bool],
        options: Obj,
        *,
        dry_run: bool = False,
    ) -> list[Obj]:
        page = await self.store.list(res, ns, keep=keep)
        out = []
        for obj in page.items:
            meta = obj["metadata"]
            try:
                out.append(
                    await self.delete(res, meta.get("namespace"), meta["name"], options, dry_run=dry_run)
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        return out

    # subresources ----------------------------------------------------------------------------

    async def bind(self, ns: str, name: str, body: Any, *, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict) or body.get("kind") not in (None, "", "Binding"):
            raise status.bad_request("the body of a binding must be a Binding")
        target = body.get("target") or {}
        node = target.get("name")
        if not node:
            raise status.invalid(
                "Binding",
                "",
                name,
                [status.Cause("target.name", "Required value", "FieldValueRequired")],
            )
        if (body.get("metadata") or {}).get("name") not in (None, "", name):
            raise status.bad_request("the name of the binding does not match the pod")

        def bind_pod(pod: Obj) -> Obj:
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                raise status.conflict(
                    "pods/binding", name, "pod is being deleted, cannot be assigned to a host"
                )
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise status.conflict(
                    "pods/binding", name, f'pod {name} is already assigned to node "{current}"'
                )
            pod["spec"]["nodeName"] = node
            st = pod.setdefault("status", {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": rfc3339(now()),
                }
            )
            st["conditions"] = conds
            return pod

        # As upstream's cacher does for GuaranteedUpdate: start from the watch cache (or our
        # own last write), write on that revision, and read etcd only when the guess was stale
        # (a conflict) or would refuse the binding; a dry run always reads.
        async with self._lock(resources.PODS, ns, name):
            fresh = dry_run
            for _ in range(_RETRIES):
                old, guessed = await self._current(resources.PODS, ns, name, fresh)
                fresh = True
                try:
                    new = bind_pod(copy.deepcopy(old))
                except ApiError:
                    if guessed:
                        continue  # judge the binding against the stored pod, not a guess
                    raise
                if dry_run:
                    return new
                try:
                    written = await self.store.update(
                        resources.PODS, new, parse_rv(old["metadata"]["resourceVersion"])
                    )
                except ApiError as e:
                    if is_conflict(e) or (e.code == 404 and guessed):
                        continue
                    raise
                self._remember(resources.PODS, written)
                return written
        raise status.conflict("pods/binding", name, status.STALE)

    @staticmethod
    def scale_of(obj: Obj) -> Obj:
        meta = obj["metadata"]
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {
                "replicas": st.get("replicas", 0),
                "selector": selector_to_string(spec.get("selector")),
            },
        }

    async def update_scale(
        self, res: Resource, ns: str, name: str, body: Any, *, content_type: str = "", dry_run: bool = False
    ) -> Obj:
        """PUT (content_type empty) or PATCH of the scale subresource."""

        def rescale(obj: Obj) -> Obj:
            current = self.scale_of(obj)
            if content_type:
                wanted = patch.apply_patch(content_type, current, body)
            else:
                if not isinstance(body, dict) or body.get("kind") not in (None, "", "Scale"):
                    raise status.bad_request("the body must be an autoscaling/v1 Scale")
                wanted = body
            replicas = (wanted.get("spec") or {}).get("replicas", 0)
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise status.invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [
                        status.Cause(
                            "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
                        )
                    ],
                )
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise status.conflict(res.qualified, name, status.STALE)
            obj.setdefault("spec", {})["replicas"] = replicas
            return obj

        return self.scale_of(await self.mutate(res, ns, name, rescale, dry_run=dry_run))
