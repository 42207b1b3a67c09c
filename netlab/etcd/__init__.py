"""etcd for netlab: a v3 JSON-gateway client (`EtcdClient`) and the lab's etcd process.

The client is shared by flanneld (subnet leases) and the apiserver (its store). The process
manager (`netlab.etcd.server`) is imported separately because only `netlab up` and
`netlab etcd` need it.
"""

from netlab.etcd.client import DEFAULT_URL, Compare, EtcdClient, Op, parse_url
from netlab.etcd.errors import Compacted, EtcdError, LeaseNotFound, WatchCanceled
from netlab.etcd.types import (
    CasResult,
    DeleteResult,
    Event,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Progress,
    PutResult,
    RangeResult,
    Status,
    TxnResult,
    prefix_end,
)
from netlab.etcd.watch import Watch

__all__ = [
    "DEFAULT_URL",
    "CasResult",
    "Compacted",
    "Compare",
    "DeleteResult",
    "EtcdClient",
    "EtcdError",
    "Event",
    "KeyValue",
    "LeaseGrant",
    "LeaseInfo",
    "LeaseNotFound",
    "Op",
    "Progress",
    "PutResult",
    "RangeResult",
    "Status",
    "TxnResult",
    "Watch",
    "WatchCanceled",
    "parse_url",
    "prefix_end",
]
