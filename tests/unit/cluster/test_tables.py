"""Server-side Table rendering (what `kubectl get` prints), against a golden file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from netlab.cluster import tables

GOLDEN = Path(__file__).parent.parent / "golden" / "apiserver_tables.json"
NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)

OBJECTS = {
    "pods": [
        {
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-05-01T11:55:00Z"},
            "spec": {"nodeName": "node1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.5",
                "containerStatuses": [
                    {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
                    {
                        "name": "b",
                        "ready": False,
                        "restartCount": 1,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    },
                ],
            },
        }
    ],
    "services": [
        {
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-04-29T10:00:00Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
            },
        }
    ],
    "nodes": [
        {
            "metadata": {
                "name": "node1",
                "creationTimestamp": "2025-05-01T09:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": ""},
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0"},
                "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
            },
        }
    ],
    "deployments": [
        {
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-05-01T11:59:30Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}},
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        }
    ],
    "endpointslices": [
        {
            "metadata": {
                "name": "web-abcde",
                "namespace": "default",
                "creationTimestamp": "2025-05-01T11:00:00Z",
            },
            "addressType": "IPv4",
            "ports": [{"port": 80}],
            "endpoints": [{"addresses": [f"10.244.{i}.5"]} for i in range(1, 6)],
        }
    ],
    "configmaps": [
        {
            "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "data": {"a": "1", "b": "2"},
        }
    ],
    "secrets": [
        {
            "metadata": {"name": "tls", "namespace": "default", "creationTimestamp": "2025-05-01T11:58:00Z"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
        },
        {
            "metadata": {"name": "none", "namespace": "default", "creationTimestamp": "2025-05-01T11:59:00Z"},
            "type": "Opaque",
        },
    ],
}


def render_all() -> dict[str, object]:
    return {plural: tables.render_table(plural, objs, "42", NOW) for plural, objs in OBJECTS.items()}


def test_tables_golden() -> None:
    assert render_all() == json.loads(GOLDEN.read_text())


def test_watch_rows_drop_columns() -> None:
    t = tables.render_table("pods", OBJECTS["pods"], "42", NOW, with_columns=False)
    assert t["columnDefinitions"] is None and len(t["rows"]) == 1


def test_human_duration() -> None:
    assert [
        tables.human_duration(s) for s in (5, 119, 300, 312, 3 * 3600 + 240, 30 * 3600, 3 * 86400 + 3600)
    ] == ["5s", "119s", "5m", "5m12s", "3h4m", "30h", "3d1h"]
