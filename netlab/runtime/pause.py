"""The pause process: it holds a sandbox's namespaces and does nothing else.

Like Kubernetes' pause container, it is the first process of a pod. Given the path of the
pod's network namespace it joins it and makes fresh IPC and UTS namespaces itself (what
`nsenter --net=... unshare --ipc --uts` would do, without starting two more programs per
pod); without it, it is started already inside them. Those namespaces live exactly as long as
it does; every command later run in the pod joins them. It sets the pod's hostname, tells the
runtime it is ready by writing one line to stdout, then sleeps. It reaps any child that is
reparented to it (it declares itself a child subreaper, as PID 1 of a pod would be), and
exits with status 0 on SIGTERM or SIGINT.

It is run as a script with `python -I -S` and imports only the standard library, so it starts
in a few milliseconds and holds no more than a bare interpreter's memory. It uses the built-in
`_signal` rather than `signal`, which imports `enum` to wrap the constants: about 4 ms of
CPU per pod here.
"""

import _signal
import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000


def _reap(signum, frame):  # type: ignore[no-untyped-def]
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop(signum, frame):  # type: ignore[no-untyped-def]
    raise SystemExit(0)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        sys.stderr.write(f"pause: {what}: {os.strerror(ctypes.get_errno())}\n")
        raise SystemExit(1)


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: pause.py HOSTNAME [NETNS_PATH]\n")
        raise SystemExit(2)
    libc = ctypes.CDLL(None, use_errno=True)
    if len(sys.argv) == 3:
        try:
            fd = os.open(sys.argv[2], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            sys.stderr.write(f"pause: {sys.argv[2]}: {e.strerror}\n")
            raise SystemExit(1) from None
        _check(libc.setns(fd, CLONE_NEWNET), f"cannot enter {sys.argv[2]}")
        os.close(fd)
        _check(libc.unshare(CLONE_NEWIPC | CLONE_NEWUTS), "cannot unshare IPC and UTS")
    name = sys.argv[1].encode()
    _check(libc.sethostname(name, len(name)), f"cannot set the hostname {sys.argv[1]}")
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _signal.signal(_signal.SIGTERM, _stop)
    _signal.signal(_signal.SIGINT, _stop)
    _signal.signal(_signal.SIGCHLD, _reap)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    os.write(1, b"ready\n")
    # the runtime stops reading after the first line; nothing else is ever written
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        _signal.pause()


if __name__ == "__main__":
    main()
