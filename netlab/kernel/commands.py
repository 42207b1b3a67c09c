"""Running programs inside a namespace: the kernel's own tools, and CNI plugins.

Some kernel interfaces are best driven by their standard tools (`iptables-restore`, `ipset`,
`conntrack`, `tc`), and a CNI runtime executes plugins in the node's namespace. Such a child
is forked and exec'd from a short-lived thread that has joined the target namespace (see
`netns`): a child inherits the network namespace of the thread that created it, so the calling
process never changes namespace and no `nsenter` runs in between. That saves a process per
call (about 2 ms of wall time and 1 ms of CPU here), which adds up for the plugins a kubelet
runs for every pod. `in_netns` still builds `nsenter` command lines for programs that replace
the calling process (`netlab exec`) or that a user reads.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from netlab.errors import KernelError, NotFound, PrerequisiteError
from netlab.kernel.netns import netns_path, run_in_netns


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed so that it runs in `netns` (unchanged for None)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def popen_in_netns(netns: str | None, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **popen)` with the child in `netns` (None: the caller's own).

    Only the fork and exec happen on the namespace's thread; the caller talks to the child
    from wherever it is. Errors starting the program (OSError) are raised as Popen raises them.
    """
    if netns is None:
        return subprocess.Popen(list(argv), **popen)
    return run_in_netns(netns, lambda: subprocess.Popen(list(argv), **popen))


@overload
def run_process(
    netns: str | None,
    argv: Sequence[str],
    input: bytes | None = ...,
    env: Mapping[str, str] | None = ...,
    timeout: float | None = ...,
    text: Literal[False] = ...,
) -> subprocess.CompletedProcess[bytes]: ...
@overload
def run_process(
    netns: str | None,
    argv: Sequence[str],
    input: str | None = ...,
    env: Mapping[str, str] | None = ...,
    timeout: float | None = ...,
    *,
    text: Literal[True],
) -> subprocess.CompletedProcess[str]: ...
def run_process(
    netns: str | None,
    argv: Sequence[str],
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    text: bool = False,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run(argv, input=input, capture_output=True)` with the child in `netns`.

    On a timeout the child is killed and `subprocess.TimeoutExpired` raised, as `subprocess.run`
    does; a program that cannot be started raises OSError."""
    proc = popen_in_netns(
        netns,
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        text=text,
    )
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:  # a timeout or an interrupt: never leave the child running
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def run(
    netns: str | None,
    argv: Sequence[str],
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `netns`; on failure raise KernelError with the tool's own message."""
    try:
        proc = run_process(netns, argv, input=input, timeout=timeout, text=True)
    except FileNotFoundError:
        raise PrerequisiteError(f"{argv[0]} is not installed (run the setup step)") from None
    except NotFound as e:  # the namespace is gone: the tool's failure, as with nsenter
        raise KernelError(f"{' '.join(argv[:2])} failed: {e}") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        where = f" in {netns}" if netns else ""
        raise KernelError(f"{' '.join(argv[:2])}{where} failed: {msg[-1] if msg else proc.returncode}")
    return proc
