"""The pause process: it holds a sandbox's namespaces and does nothing else.

Like Kubernetes' pause container, it is the first process of a pod. The runtime starts it
already inside the pod's network namespace and in fresh IPC and UTS namespaces
(`nsenter --net=... unshare --ipc --uts`), so those namespaces live exactly as long as it
does; every command later run in the pod joins them. It sets the pod's hostname, tells the
runtime it is ready by writing one line to stdout, then sleeps. It reaps any child that is
reparented to it (it declares itself a child subreaper, as PID 1 of a pod would be), and
exits with status 0 on SIGTERM or SIGINT.

It is run as a script with `python -I -S` and imports only the standard library, so it starts
in a few milliseconds and holds no more than a bare interpreter's memory.
"""

import ctypes
import os
import signal
import socket
import sys

PR_SET_CHILD_SUBREAPER = 36


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


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: pause.py HOSTNAME\n")
        raise SystemExit(2)
    socket.sethostname(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.write(1, b"ready\n")
    # the runtime stops reading after the first line; nothing else is ever written
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
