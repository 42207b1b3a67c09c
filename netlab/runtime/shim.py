"""The container shim: the parent of one container process, for that process's whole life.

The runtime starts one shim per container start, detached in a session of its own, so a
container outlives the kubelet that asked for it (a restarted kubelet adopts it). This is the
part of containerd-shim and conmon that a process runtime needs:

1. it makes the container process: a child that joins the container's cgroups, the pod's
   network namespace (by its pinned path) and the pause process's IPC and UTS namespaces,
   gets a PID namespace of its own (the shim unshares CLONE_NEWPID first, so its child is PID 1
   there) and a mount namespace of its own with a private /proc for that PID namespace, then
   changes to the working directory and execs the command with the container's environment;
2. it tells the runtime, with one JSON line on stdout, the child's pid or why the start failed
   (`exec: "x": executable file not found in $PATH`, as runc words it);
3. it keeps the container's stdout and stderr in the CRI log format, one file per start:
   `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, where `P` marks a part of a line longer than
   16 KiB (containerd's buffer) and `F` the line's end;
4. when the process has exited and its output is drained, it writes the exit status
   (`exitCode`: the status, or 128 + signal as container runtimes report it; the signal; the
   time; the cgroups' OOM-kill count) to the exit file atomically, and exits.

Signals are the runtime's business and go to the container process directly; the shim ignores
the usual termination signals so that a Ctrl-C aimed at a terminal never drops a container's
logs. Run as `python -I -S shim.py SPEC` (standard library only, like the pause program) so
that it starts in milliseconds: it imports neither `typing` nor `contextlib` nor `json` (which
pulls in `re`) nor `signal` (which pulls in `enum`: the built-in `_signal` does the same
here); the spec comes in `marshal` format, and the little JSON it writes (the ready line, the
exit file) is written by `to_json`.
"""

import _signal
import ctypes
import marshal
import os
import select
import sys
import time

TYPE_CHECKING = False  # typing itself is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 16384
MS_PRIVATE = 1 << 18

MAX_LINE = 16 * 1024  # containerd's maximum log line before it splits into partial lines
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc = ctypes.CDLL(None, use_errno=True)


def timestamp(ns: int) -> str:
    """RFC3339 with nine fractional digits in UTC, the CRI log's fixed-width timestamp."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def cri_lines(stream: str, buf: bytes, now_ns: int, eof: bool = False) -> tuple[list[bytes], bytes]:
    """Split `buf` into CRI log lines; returns (lines, the unfinished rest to keep).

    Complete lines are tagged F; a rest longer than MAX_LINE is written in P parts; at end of
    stream a rest without a newline becomes the last F line."""
    ts = timestamp(now_ns).encode()
    head = ts + b" " + stream.encode() + b" "
    out: list[bytes] = []
    while True:
        nl = buf.find(b"\n")
        if nl != -1 and nl <= MAX_LINE:
            out.append(head + b"F " + buf[:nl] + b"\n")
            buf = buf[nl + 1 :]
        elif len(buf) > MAX_LINE or (nl > MAX_LINE):
            out.append(head + b"P " + buf[:MAX_LINE] + b"\n")
            buf = buf[MAX_LINE:]
        else:
            break
    if eof and buf:
        out.append(head + b"F " + buf + b"\n")
        buf = b""
    return out, buf


def signal_name(signum: int) -> str:
    """What `signal.Signals(signum).name` says: of aliases (SIGABRT/SIGIOT) the first by name."""
    names = sorted(
        k for k, v in vars(_signal).items() if k.startswith("SIG") and "_" not in k and v == signum
    )
    return names[0] if names else f"SIG{signum}"


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns(fd: int, nstype: int, what: str) -> None:
    _check(_libc.setns(fd, nstype), f"setns {what}")


def _exec_error(e: OSError, argv0: str, env: dict) -> str:
    if e.errno == 2 and "/" not in argv0:
        return f'exec: "{argv0}": executable file not found in $PATH'
    if e.errno == 2:
        return f'exec: "{argv0}": stat {argv0}: no such file or directory'
    if e.errno == 13:
        return f'exec: "{argv0}": permission denied'
    return f'exec: "{argv0}": {e.strerror}'


def _child(spec: dict, fds: dict, out_w: int, err_w: int, status_w: int) -> None:
    """In the forked child: PID 1 of the new PID namespace. Never returns."""
    try:
        for d in spec.get("cgroups", []):
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")  # 0: the writing process
        _setns(fds["net"], CLONE_NEWNET, "net")
        _setns(fds["ipc"], CLONE_NEWIPC, "ipc")
        _setns(fds["uts"], CLONE_NEWUTS, "uts")
        _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        _check(
            _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
            "mount /proc",
        )
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.setsid()
        cwd = spec.get("cwd") or "/"
        try:
            os.chdir(cwd)
        except OSError as e:
            raise OSError(
                e.errno, f'chdir to cwd ("{cwd}") set in config.json failed: {e.strerror}'
            ) from None
        for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGPIPE, _signal.SIGCHLD):
            _signal.signal(sig, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        env = dict(spec.get("env") or {})
        env.setdefault("PATH", DEFAULT_PATH)
        argv = spec["argv"]
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            raise OSError(e.errno, _exec_error(e, argv[0], env)) from None
    except OSError as e:
        os.write(status_w, (e.strerror or str(e)).encode())
    except BaseException as e:  # report anything, never fall back into the shim's code
        os.write(status_w, f"{type(e).__name__}: {e}".encode())
    os._exit(127)


def _json_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def to_json(obj: dict) -> str:
    """A flat dict of str, int, float, bool and None as JSON (without importing json)."""
    items = []
    for k, v in obj.items():
        if v is None:
            text = "null"
        elif isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (int, float)):
            text = repr(v)
        else:
            text = _json_str(str(v))
        items.append(f"{_json_str(k)}: {text}")
    return "{" + ", ".join(items) + "}"


def _write_exit(path: str, status: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(to_json(status))
    os.replace(tmp, path)


def _now_rfc3339() -> str:
    return timestamp(time.time_ns())[:-11] + "Z"  # seconds precision, as Kubernetes shows times


def _pump(log_fd: int, pipes: dict) -> None:
    """Copy the container's output into the log until both pipes are closed."""
    bufs = {fd: b"" for fd in pipes}
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    open_fds = set(pipes)
    while open_fds:
        for fd, _ in poller.poll():
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            eof = not data
            lines, bufs[fd] = cri_lines(pipes[fd], bufs[fd] + data, time.time_ns(), eof)
            if lines:
                try:  # noqa: SIM105 (contextlib costs start-up time)
                    os.write(log_fd, b"".join(lines))
                except OSError:  # a full disk loses log lines, never the container
                    pass
            if eof:
                poller.unregister(fd)
                open_fds.discard(fd)
                os.close(fd)


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: shim.py SPEC\n")
        raise SystemExit(2)
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    with open(sys.argv[1], "rb") as spec_file:
        spec = marshal.load(spec_file)

    def fail(message: str) -> "NoReturn":
        _write_exit(spec["exit"], {"exitCode": 128, "reason": "StartError", "message": message,
                                   "finishedAt": _now_rfc3339(), "finishedAtUnix": time.time(),
                                   "oomKills": 0})  # fmt: skip
        os.write(1, (to_json({"error": message}) + "\n").encode())
        raise SystemExit(0)

    try:
        fds = {
            "net": os.open(spec["netns"], os.O_RDONLY | os.O_CLOEXEC),
            "ipc": os.open(spec["ipc"], os.O_RDONLY | os.O_CLOEXEC),
            "uts": os.open(spec["uts"], os.O_RDONLY | os.O_CLOEXEC),
        }
        log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        fail(f"cannot open the pod's namespaces or the log: {e.filename}: {e.strerror}")
    # the pause process must still be the one recorded, else the namespaces are someone else's
    try:
        with open(f"/proc/{spec['pause_pid']}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        started = None
    if started != spec["pause_start"]:
        fail("the pod's sandbox is gone (its pause process exited)")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWPID), "unshare pid namespace")
    except OSError as e:
        fail(str(e.strerror))
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        os.close(status_r)
        _child(spec, fds, out_w, err_w, status_w)
    for fd in (out_w, err_w, status_w, *fds.values()):
        os.close(fd)
    problem = b""
    while chunk := os.read(status_r, 4096):
        problem += chunk
    os.close(status_r)
    if problem:
        os.waitpid(pid, 0)
        os.close(out_r)
        os.close(err_r)
        fail(problem.decode(errors="replace"))
    os.write(1, (to_json({"pid": pid}) + "\n").encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _pump(log_fd, {out_r: "stdout", err_r: "stderr"})
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        code, signame = 128 + signum, signal_name(signum)
    else:
        code, signame = os.WEXITSTATUS(status), None
    oom = 0
    for d in spec.get("cgroups", []):
        for name in ("memory.oom_control", "memory.events"):
            try:
                with open(os.path.join(d, name)) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            oom += int(value)
            except (OSError, ValueError):
                continue
    os.close(log_fd)
    _write_exit(spec["exit"], {"exitCode": code, "signal": signame, "finishedAt": _now_rfc3339(),
                               "finishedAtUnix": time.time(), "oomKills": oom})  # fmt: skip


if __name__ == "__main__":
    main()
