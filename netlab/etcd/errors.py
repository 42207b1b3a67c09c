"""Errors specific to etcd, under the one netlab exception tree.

An unreachable etcd is `netlab.errors.Unavailable` (shared with other services); the rest are
outcomes a caller decides on: a compacted revision (re-list), a missing lease (grant a new one),
a watch the server cancelled (re-watch or give up).
"""

from __future__ import annotations

from netlab.errors import NetlabError, NotFound


class EtcdError(NetlabError):
    """etcd answered, but refused the request; the message is etcd's own, with the URL."""


class Compacted(EtcdError):
    """The requested revision is older than etcd's compaction point.

    `compact_revision` is the oldest revision still available when etcd said so (a watch
    reports it); 0 when etcd did not say (a range read does not). Callers re-list and go on from
    the list's revision: the apiserver answers 410 Gone, flanneld re-syncs.
    """

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class LeaseNotFound(EtcdError, NotFound):
    """The etcd lease does not exist (never granted, revoked, or expired)."""


class WatchCanceled(EtcdError):
    """etcd cancelled a watch for a reason other than compaction; `reason` is etcd's text."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
