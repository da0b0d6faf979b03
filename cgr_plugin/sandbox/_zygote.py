"""Warm sandbox server. Appended to ``_worker.py``'s text and run as ``-c`` text inside
bubblewrap (as ``nobody``, no capabilities), with argv ``--zygote FD``; standard library only.

The zygote has imported what a worker needs and forks one sandbox per request; it never sees a
program or an item (those go straight from the parent to the worker, after the fork), so no
program can learn anything of another through the zygote's memory. A request is one message on
the SOCK_SEQPACKET socket FD: JSON ``{"tmp": bytes}`` plus five descriptors (worker input,
worker output, stdout, stderr, control socket). Per request:

- S (the zygote's child) closes everything but the request's descriptors, says ``C`` on the
  control socket (the kernel attaches its pid, as the parent sees it), unshares new user,
  mount, PID, network, IPC and UTS namespaces, mapping only its own uid and gid (no
  setgroups), and waits for ``go``: by then the parent has put it in the program's cgroup, so
  every process S starts is born there. It unshares a cgroup namespace rooted there, forks I
  and waits for it.
- I is PID 1 of the new PID namespace: it dies with S (PDEATHSIG), starts a new session,
  mounts a fresh /proc (its own PID namespace only; /proc/cmdline hidden) with /proc/sys
  read-only over it, a private
  size-capped /tmp, a fresh /dev/pts; brings loopback up; becomes non-dumpable (the program
  cannot ptrace it); then drops every capability (bounding, ambient, effective, permitted,
  inheritable) with no_new_privs set, says ``G``, and forks W. Like bubblewrap's init it reaps
  orphans; when W ends it reports W's wait status (``X<status>``) and exits, and the kernel
  kills whatever is left in the namespace.
- W (PID 2, in I's session and process group, as a cold worker is in bubblewrap's init's)
  restores the signal dispositions the zygote started with, says ``W``, puts /dev/null,
  stdout, stderr, worker input and worker output on descriptors 0-4 (argv ``-c 3 4``, as a
  cold worker's) and closes the rest, the control socket included, runs what a program's start
  runs once without a program (so that its first-touch costs are paid ahead of time), installs
  the seccomp deny-list, then waits in ``main()`` for the parent's ``init``.

Errors before W is ready are sent as ``E<text>``.
"""
# ruff: noqa: F821  (``_serve`` comes from _worker.py, whose text precedes this one)

import contextlib
import ctypes
import fcntl
import gc
import json
import os
import select
import signal
import socket
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS, _CLONE_NEWCGROUP, _CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
_CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (0x08000000, 0x10000000,
                                                                 0x20000000, 0x40000000)
_NAMESPACES = (_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC
               | _CLONE_NEWUTS | _CLONE_NEWCGROUP)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP = 1, 4, 24
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
_CAP_VERSION_3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _check(result, what):
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _prctl(option, arg=0):
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), f"prctl({option})")


def _mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _drop_capabilities():
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        last = int(fh.read())
    for cap in range(last + 1):
        _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; twice (64 bits)
    _check(_libc.capset(header, data), "capset")


def _loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _close_all_but(keep):
    low = 3
    for fd in sorted(keep) + [os.sysconf("SC_OPEN_MAX")]:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)


def _say(ctl, text):
    ctl.send(text.encode() if isinstance(text, str) else text)


def _sandbox(server, request, fds, dispositions):
    """S: runs in the zygote's child; never returns."""
    os.close(server.detach())
    _close_all_but(fds)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    ctl = socket.socket(fileno=fds[4])
    try:
        _say(ctl, "C")
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(_NAMESPACES & ~_CLONE_NEWCGROUP), "unshare")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
        if ctl.recv(16) != b"go":  # meanwhile the parent has put S in the program's cgroup
            os._exit(1)
        _check(_libc.unshare(_CLONE_NEWCGROUP), "unshare")  # rooted at that cgroup
        alive_r, alive_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(alive_w)
            _init(ctl, request, fds, dispositions, alive_r)
    except BaseException as err:
        _fail(ctl, err)
    for fd in fds[:4]:
        os.close(fd)
    os.close(ctl.detach())
    os.close(alive_r)
    os.waitpid(child, 0)
    os._exit(0)


def _fail(ctl, err):
    """Tell the parent why this sandbox could not be set up (an "E" message), then exit."""
    with contextlib.suppress(BaseException):
        _say(ctl, f"E{type(err).__name__}: {err}"[:2000])
    os._exit(1)


def _init(ctl, request, fds, dispositions, alive_r):
    """I: PID 1 of the program's namespaces; never returns."""
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([alive_r], [], [], 0)[0]:  # S died before PDEATHSIG was armed
            os._exit(1)
        os.close(alive_r)
        os.setsid()
        for number in dispositions:
            signal.signal(number, signal.SIG_DFL)  # PID 1 ignores default-action signals
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        _mount("/dev/null", "/proc/cmdline", None, _MS_BIND)  # the host's boot arguments
        _mount("/proc/sys", "/proc/sys", None, _MS_BIND | _MS_REC)
        _mount(None, "/proc/sys", None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID
               | _MS_NODEV | _MS_NOEXEC)
        _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={int(request['tmp'])},mode=0755")
        _mount("devpts", "/dev/pts", "devpts", _MS_NOSUID | _MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620")
        _loopback_up()
        os.chdir("/tmp")
        _prctl(_PR_SET_DUMPABLE, 0)
        _drop_capabilities()
        _say(ctl, "G")
        worker = os.fork()
        if worker == 0:
            _work(ctl, fds, dispositions)
    except BaseException as err:
        _fail(ctl, err)
    for fd in fds[:4]:
        os.close(fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == worker:
            with contextlib.suppress(OSError):
                _say(ctl, f"X{status}")
            os._exit(0)


def _work(ctl, fds, dispositions):
    """W: the worker, PID 2; never returns."""
    try:
        _prctl(_PR_SET_DUMPABLE, 1)
        for number, handler in dispositions.items():
            signal.signal(number, handler)
        _say(ctl, "W")
        ctl.detach()  # closed below (or replaced, if its number is one of 0-4)
        sources = [os.open("/dev/null", os.O_RDONLY), fds[2], fds[3], fds[0], fds[1]]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 16) for fd in sources]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        _close_all_but(range(5))
        sys.argv[:] = ["-c", "3", "4"]
        _warm_up()
        with contextlib.suppress(OSError):  # if it fails, main() fails closed before the program
            _seccomp()
        _serve(3, 4)
    finally:
        os._exit(1)  # _serve exits by itself; this only keeps an error from reaching the zygote


_WARM_UP = {"type": "init", "seed": 0, "program": """
import math
def solve(item, solver):
    scores = {k: solver.judge(f"{item.question} {v}?") for k, v in item.options.items()}
    replies = [solver.ask(f"Q: {item.question} #{i}", max_tokens=8) for i in range(2)]
    best = max(scores.values()) if scores else math.nan
    return solver.pick(scores) if replies and best == best else None
""", "item": {"id": "x", "question": "Which?", "letters": ["A", "B"], "choices": ["1", "2"],
             "context": None, "payload": None, "metadata": {}},
    "limits": {"cpu_seconds": 1, "memory_bytes": 1, "file_bytes": 1, "processes": 1,
               "output_chars": 1}}


def _warm_up():
    """Run what ``main`` runs for a program, without the program, so that the memory it
    touches is already this process's own (and the parser's arenas ready) when one arrives."""
    init = json.loads(json.dumps(_WARM_UP))
    exec(compile(init["program"], "program.py", "exec"),  # noqa: S102 - our own text
         {"__name__": "cgr_program", "__builtins__": __builtins__})
    Item(init["item"])
    Solver(init["seed"]).pick({"A": 1.0, "B": 1.0})
    _Capped(init["limits"]["output_chars"]).write("x")
    _seccomp_filter()  # built once, here; installed by each worker before its program
    json.dumps({"type": "call", "kind": "ask", "prompt": "x", "max_tokens": 8})


def _zygote(fd):
    dispositions = {}
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            handler = signal.getsignal(number)
            if handler is not None:
                dispositions[number] = handler
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the zygote never waits for its children
    _warm_up()
    gc.freeze()  # children share these objects' pages; a collection would copy them all
    server = socket.socket(fileno=fd)
    server.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(server, 4096, 8)
        except OSError:
            os._exit(0)
        if not message:  # the parent is gone
            os._exit(0)
        try:
            request = json.loads(message)
            if len(fds) != 5:
                raise ValueError(f"{len(fds)} descriptors")
            child = os.fork()
        except Exception as err:
            if fds:
                with contextlib.suppress(OSError):
                    os.write(fds[-1], f"E{type(err).__name__}: {err}".encode())
            for each in fds:
                os.close(each)
            continue
        if child == 0:
            try:
                _sandbox(server, request, fds, dispositions)
            finally:
                os._exit(1)
        for each in fds:
            os.close(each)


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote(int(sys.argv[2]))
