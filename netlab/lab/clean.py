"""`netlab clean`: remove what crashed runs left behind, and only what netlab owns.

A crashed `up`, a killed test or a reboot-less power cut can leave namespaces, processes and
state files without a `lab.json` to find them by. Clean finds them by ownership instead:

- supervised components recorded in the lab's pid files (pid *and* start time must match, so a
  reused pid is never signalled);
- every named network namespace whose name starts with the lab prefix (with the default
  prefix `nl-` that is every lab on the host, including the test suite's `nl-t<hex>-` labs),
  and every process whose network namespace is one of them, found through /proc, never by name;
- the lab's cgroups (`netlab/<lab>` in each hierarchy, see `netlab.runtime.cgroups`), once
  the processes in them are gone;
- the lab's state and run directories, only when they carry netlab's ownership marker.

Nothing in the host's own namespace is touched: netlab never creates anything there.
`plan_clean` only looks; `apply_clean` acts on a plan and re-checks each item as it goes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netlab import kernel
from netlab.errors import NetlabError
from netlab.lab import processes, state
from netlab.layout import Layout
from netlab.runtime.cgroups import CgroupTree


@dataclass(frozen=True)
class Action:
    kind: str  # component | process | netns | cgroup | dir
    target: str
    description: str


@dataclass(frozen=True)
class CleanPlan:
    actions: tuple[Action, ...]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _netns_order(layout: Layout, ns: str) -> int:
    """Pods first, then nodes and the client, the underlay switch last."""
    if ns.startswith(layout.pod_netns("")):
        return 0
    if ns == layout.underlay_netns:
        return 2
    return 1


def lab_namespaces(layout: Layout) -> list[str]:
    found = [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)]
    return sorted(found, key=lambda ns: (_netns_order(layout, ns), ns))


def plan_clean(layout: Layout) -> CleanPlan:
    actions: list[Action] = []
    for comp in processes.list_running(layout):
        actions.append(Action("component", comp.name, f"component {comp.name} (pid {comp.pid})"))
    me = os.getpid()
    for ns in lab_namespaces(layout):
        for pid in kernel.netns_pids(ns):
            if pid != me:
                actions.append(Action("process", ns, f"process {pid} ({_comm(pid)}) in {ns}"))
        actions.append(Action("netns", ns, f"network namespace {ns}"))
    for path in CgroupTree(layout.prefix).leftovers():
        actions.append(Action("cgroup", str(path), f"cgroup {path}"))
    for d in (layout.run_dir, layout.state_dir):
        if state.is_owned(d):
            actions.append(Action("dir", str(d), f"directory {d}"))
    return CleanPlan(tuple(actions))


def apply_clean(layout: Layout, plan: CleanPlan, report: Callable[[Action], None] | None = None) -> None:
    """Carry out `plan`; keeps going past failures and raises one error listing them."""
    import shutil

    errors: list[str] = []
    for action in plan.actions:
        try:
            if action.kind == "component":
                processes.stop(layout, action.target)
            elif action.kind == "process":
                # re-scan: kill whatever runs in the namespace now, not a pid seen earlier
                processes.kill_netns_processes(action.target)
            elif action.kind == "netns":
                processes.kill_netns_processes(action.target)
                kernel.delete_netns(action.target)
            elif action.kind == "cgroup":
                problems = CgroupTree(layout.prefix).remove_all()
                if problems:
                    raise NetlabError("; ".join(problems))
            elif action.kind == "dir" and state.is_owned(Path(action.target)):
                shutil.rmtree(action.target)
        except (NetlabError, OSError) as e:
            errors.append(f"{action.description}: {e}")
            continue
        if report:
            report(action)
    if errors:
        raise NetlabError("clean could not remove " + "; ".join(errors))
