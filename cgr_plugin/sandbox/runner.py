"""Run one untrusted program in an isolated process and serve its solver calls.

Isolation levels, best first (recorded in every record):

- ``bwrap+cgroup``: bubblewrap namespaces (user, PID, mount, network, IPC, UTS, cgroup), all
  capabilities dropped, a read-only root (``/proc/sys`` and ``/dev`` too) with a private
  size-capped /tmp, no home, no project files, an empty environment, rlimits, plus a cgroup of
  its own capping the processes and memory of the whole program;
- ``bwrap``: the same without the cgroup (rlimits only);
- ``process``: no usable bubblewrap: a plain child process with an empty environment, a private
  working folder and rlimits. It does NOT stop network access or file writes; cgr warns loudly.

When cgr runs as root, the sandbox runs as ``nobody`` (setpriv) on the system's
``/usr/bin/python3``: root inside a namespace could still write ``/proc/sys`` and other
root-only files. The program's Python has no site-packages: standard library only.

The model stays in this process; programs never run in it, and it never forks (subprocesses
start by vfork/exec, without ``preexec_fn``). Program time excludes time spent waiting for the
solver: the clock stops while a call is being answered (threads the program started keep
running meanwhile; CPU rlimits still bound them).

Warm and cold starts. A cold sandbox is started for its program: a start gate (``sh``, held
until the program's fresh cgroup holds it), setpriv, bwrap, then a fresh interpreter (about
60 ms). A warm sandbox (the default; ``CGR_SANDBOX_WARM=0`` forces cold) is forked ahead of
time from a zygote (``_sandbox_zygote.py``): a Python that has imported the worker, started by
exec (never by forking this process) inside the same bwrap command as a cold sandbox, as
``nobody`` with no capabilities, dying with this process (``--die-with-parent``, and when its
socket closes) and closed at exit. Per sandbox it forks S, which the parent puts in a fresh
cgroup before S creates anything; S unshares new user, mount, PID, network, IPC, UTS and cgroup
namespaces and forks I, PID 1 of the new PID namespace, which mounts a fresh /proc (showing
only the program's own processes) with /proc/sys read-only, a private size-capped /tmp and a
fresh /dev/pts, brings loopback up, drops every capability (no_new_privs set, bounding and
ambient sets cleared) and forks W, the worker. So each program still gets, per program: uid
``nobody`` without capabilities; no network (a network namespace of its own, loopback only);
its own PID namespace (it cannot see or signal its siblings, the zygote or this process);
its own /tmp; a read-only root, /proc/sys and /dev; the same empty environment; the same
rlimits (set by the same worker code); and its own cgroup, entered before any program code
runs, killed and removed when the program ends. The zygote never sees a program or an item:
they go from here to W over W's own pipes. What differs from a cold start: programs share the
zygote's read-only memory (copy-on-write; pages the zygote touched are charged to this
process's cgroup, not the program's, so the memory cap counts the interpreter's shared pages
once instead of per program), and modules the worker needs are already imported. When the
program ends, I and W are killed and ``run_program`` returns only when nothing the program ran
is left: W has exited and the cgroup holds nothing but S and I (ours), or else I has exited,
which as PID 1 it does only after everything in its PID namespace is dead; the emptied cgroup
is removed moments later, when S has torn the namespaces down and gone. The record says
``bwrap+cgroup`` either way (``extra["start"]`` says ``warm`` or ``cold``). An idle started
sandbox costs three processes and about 6 MB (PSS); ``POOL_SIZE`` are kept.

If the warm path cannot be set up here (nested user namespaces refused, say), cgr warns once
and starts every sandbox cold; a zygote that dies is restarted (programs running in it end as
``crashed``, with a note). ``run_program`` may be called from many threads at once; see
``_WarmPool`` for how they share the zygote.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["SandboxLimits", "SandboxResult", "isolation_level", "run_program"]

log = logging.getLogger(__name__)
WORKER = Path(__file__).with_name("_worker.py")
NOBODY = 65534
_MAX_MESSAGE = 1 << 20  # one protocol line; longer is a protocol violation
# Statuses the worker may report; anything else it sends is a protocol error.
WORKER_STATUSES = ("syntax_error", "missing_entry", "runtime_error", "timeout", "memory_limit",
                   "budget_exceeded")


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 20.0  # program time, solver waits excluded
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    tmp_bytes: int = 64 << 20
    processes: int = 32
    output_chars: int = 20_000

    @classmethod
    def for_timeout(cls, seconds: float, memory_mb: int = 1024) -> SandboxLimits:
        return cls(wall_seconds=seconds, cpu_seconds=max(1, int(seconds) + 1),
                   memory_bytes=memory_mb << 20)


@dataclass
class SandboxResult:
    status: str  # ok, one of WORKER_STATUSES, crashed or protocol_error
    answer: Any = None
    message: str | None = None
    output: str = ""
    isolation: str = "process"
    program_seconds: float = 0.0
    solver_seconds: float = 0.0
    total_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# -- isolation -----------------------------------------------------------------------------------
def _as_root() -> bool:
    return os.geteuid() == 0


def _python() -> str:
    """The sandbox's interpreter: one the unprivileged sandbox user can read."""
    if _as_root() and os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return os.path.realpath(sys.executable)  # a venv's python resolves to its base interpreter


def _drop_privileges() -> list[str]:
    if not _as_root():
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def _worker_args(read_fd: int, write_fd: int, source: str | None = None) -> list[str]:
    # The worker travels as -c text: nothing of this package needs to be readable by `nobody`.
    source = source if source is not None else WORKER.read_text(encoding="utf-8")
    return [_python(), "-I", "-S", "-c", source, str(read_fd), str(write_fd)]


def _bwrap_command(worker: list[str], limits: SandboxLimits, *, warm: bool = False
                   ) -> list[str]:
    """The sandbox command. ``warm``: the zygote's, which leaves /proc fully visible (no
    read-only /proc/sys over it: a nested user namespace may only mount a fresh /proc where one
    is) and /tmp an empty read-only folder; each forked sandbox mounts both for itself."""
    cmd = [*_drop_privileges(), "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/usr/{link}").is_dir():
            cmd += ["--symlink", f"usr/{link}", f"/{link}"]
    if warm:
        cmd += ["--proc", "/proc", "--dev", "/dev", "--dir", "/tmp"]
    else:
        cmd += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev",
                "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    root = Path(worker[0]).resolve().parent.parent
    if not str(root).startswith("/usr"):
        cmd += ["--ro-bind", str(root), str(root)]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            "--chdir", "/tmp", *worker]
    return cmd


@lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    """Start the real sandbox command once, with a worker that only says hello."""
    if shutil.which("bwrap") is None or (_as_root() and shutil.which("setpriv") is None):
        return False
    read_fd, write_fd = os.pipe()
    try:
        command = _bwrap_command(_worker_args(read_fd, write_fd,
                                              "import os, sys; os.write(int(sys.argv[2]), b'ok')"),
                                 SandboxLimits())
        probe = subprocess.run(command, capture_output=True, timeout=60,
                               pass_fds=(read_fd, write_fd), env={"PATH": "/usr/bin:/bin"})
        os.close(write_fd)
        write_fd = -1
        said = os.read(read_fd, 16)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("bubblewrap cannot start a sandbox here: %s", err)
        return False
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    if probe.returncode != 0 or said != b"ok":
        log.warning("bubblewrap is installed but cannot start a sandbox here: %s",
                    probe.stderr.decode(errors="replace").strip())
        return False
    return True


def _own_cgroup(controller: str) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise OSError(f"no cgroup-v1 {controller} controller")


class _Cgroup:
    """A cgroup-v1 pids + memory group for one program (what this machine kind offers)."""

    CONTROLLERS = ("pids", "memory")

    def __init__(self, limits: SandboxLimits) -> None:
        self.dirs: list[Path] = []
        self.applied: tuple[int, int] | None = None
        name = f"cgr-{uuid.uuid4().hex[:12]}"
        try:
            for controller in self.CONTROLLERS:
                folder = _own_cgroup(controller) / name
                folder.mkdir()
                self.dirs.append(folder)
            self.set_limits(limits)
        except OSError:
            self.remove()
            raise

    def set_limits(self, limits: SandboxLimits) -> None:
        wanted = (limits.processes, limits.memory_bytes)
        if wanted != self.applied:
            pids, memory = self.dirs
            (pids / "pids.max").write_text(str(limits.processes))
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes * 2))
            self.applied = wanted

    def add(self, pid: int) -> None:
        for folder in self.dirs:
            (folder / "cgroup.procs").write_text(str(pid))

    def members(self) -> list[int]:
        """The processes in the group (all of them are in every controller's group)."""
        try:
            return [int(pid) for pid in (self.dirs[0] / "cgroup.procs").read_text().split()]
        except (OSError, IndexError):
            return [-1]  # unknown: not provably empty

    def contains(self, pid: int) -> bool:
        return all(str(pid) in (folder / "cgroup.procs").read_text().split()
                   for folder in self.dirs)

    def kill(self) -> None:
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

    def oom_killed(self) -> bool:
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                for line in (folder / "memory.oom_control").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip() not in ("", "0"):
                        return True
        return False

    def remove_now(self) -> bool:
        """One try, without waiting: True once the group is gone; kills what is still in it."""
        for folder in list(self.dirs):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                self.kill()
                return False
            self.dirs.remove(folder)
        return True

    def remove(self) -> None:
        for folder in self.dirs:
            pause = 0.0005
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(pause)
                    pause = min(2 * pause, 0.02)


def _sweep_stale_cgroups() -> None:
    """Remove empty cgr-* groups left by a killed run (rmdir fails on groups still in use)."""
    for controller in _Cgroup.CONTROLLERS:
        with contextlib.suppress(OSError):
            for folder in _own_cgroup(controller).glob("cgr-*"):
                with contextlib.suppress(OSError):
                    if not (folder / "cgroup.procs").read_text().strip():
                        folder.rmdir()


@lru_cache(maxsize=1)
def _cgroups_work() -> bool:
    _sweep_stale_cgroups()
    try:
        group = _Cgroup(SandboxLimits())
    except OSError:
        return False
    group.remove()
    return True


def isolation_level() -> str:
    if _bwrap_works():
        return "bwrap+cgroup" if _cgroups_work() else "bwrap"
    return "process"


_warned_weak = False


def _warn_weak_isolation() -> None:
    global _warned_weak
    if not _warned_weak:
        _warned_weak = True
        log.warning("!!! bubblewrap (bwrap) is not usable here: generated programs run in plain "
                    "child processes that CAN reach the network, write files and read what "
                    "their user can read. Install bubblewrap (apt-get install bubblewrap) for "
                    "real isolation. !!!")


# -- warm sandboxes ------------------------------------------------------------------------------
ZYGOTE = Path(__file__).with_name("_zygote.py")
WARM_ENV = "CGR_SANDBOX_WARM"
POOL_SIZE = 6  # sandboxes kept started, each in its own cgroup, waiting for a program
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/", "PYTHONHASHSEED": "0"}
_CREDENTIALS = struct.calcsize("iII")  # struct ucred: pid, uid, gid


class _SpawnError(OSError):
    """A warm sandbox could not be started (no program ran in it)."""


def _warm_wanted() -> bool:
    return os.environ.get(WARM_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _exited(pidfds: list[int], timeout: float) -> list[int]:
    """Those of ``pidfds`` whose process has exited, waiting up to ``timeout`` for one."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(timeout, 0) * 1000)]


class _Zygote:
    """The fork server: a bubblewrap sandbox (nobody, no capabilities) whose Python waits for
    requests on a SOCK_SEQPACKET socket. Started by exec, like every sandbox."""

    def __init__(self) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.errors = tempfile.TemporaryFile()
        self.send_lock = threading.Lock()
        source = WORKER.read_text(encoding="utf-8") + "\n" + ZYGOTE.read_text(encoding="utf-8")
        command = _bwrap_command([_python(), "-I", "-S", "-c", source, "--zygote",
                                  str(child.fileno())], SandboxLimits(), warm=True)
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.errors,
                                         pass_fds=(child.fileno(),), env=_ENV, cwd="/",
                                         start_new_session=True)
        except OSError:
            self.sock.close()
            self.errors.close()
            raise
        finally:
            child.close()
        try:
            self.sock.settimeout(60)
            said = self.sock.recv(16)
        except OSError as err:
            said = f"{type(err).__name__}: {err}".encode()
        if said != b"ready":
            detail = self.stderr() or said.decode(errors="replace") or "no answer"
            self.close()
            raise _SpawnError(f"the sandbox server did not start: {detail}")
        self.sock.settimeout(10)  # a send that blocks this long means the server is stuck

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.errors.seek(0)
            return self.errors.read()[-2000:].decode(errors="replace").strip()
        return ""

    def request(self, tmp_bytes: int, fds: list[int]) -> None:
        with self.send_lock:
            socket.send_fds(self.sock, [json.dumps({"tmp": tmp_bytes}).encode()], fds)

    def close(self) -> None:
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.close()  # the server exits when its socket closes
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.errors.close()


def _close_pipes(sandbox: Any) -> None:
    """Close a sandbox's protocol pipes unless ``_execute`` already owns them (then -1)."""
    for fd in (sandbox.to_worker, sandbox.from_worker):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    sandbox.to_worker = sandbox.from_worker = -1


class _Warm:
    """One started warm sandbox: S (outside), I (PID 1) and W (the worker, waiting for
    ``init``), as described in ``_sandbox_zygote.py``; the parent holds the other pipe ends.
    With ``cgroups``, S enters a cgroup of its own before it creates anything, so I and W are
    born in it."""

    kind = "warm"

    def __init__(self, zygote: _Zygote, limits: SandboxLimits, cgroups: bool) -> None:
        self.zygote, self.tmp_bytes = zygote, limits.tmp_bytes
        self.group: _Cgroup | None = None
        self.pids: dict[str, int] = {}
        self.pidfds: dict[str, int] = {}
        self.status: int | None = None
        to_r, self.to_worker = os.pipe()
        self.from_worker, from_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.stdout, self.stderr = os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb")
        self.ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            try:
                zygote.request(limits.tmp_bytes, [to_r, from_w, out_w, err_w, ctl_child.fileno()])
            finally:
                for fd in (to_r, from_w, out_w, err_w):
                    os.close(fd)
                ctl_child.close()
            if cgroups:  # while the zygote forks
                self.group = _Cgroup(limits)
            deadline = time.monotonic() + 30
            for part in "CGW":
                kind, text, pid = self._receive(deadline)
                if kind != part or pid is None:
                    raise _SpawnError(text or f"the warm sandbox ended before {part!r}")
                self.pids[part] = pid
                try:
                    self.pidfds[part] = os.pidfd_open(pid)
                    if part == "C":  # S waits for this answer before it forks
                        if self.group is not None:
                            self.group.add(pid)
                        self.ctl.send(b"go")
                except OSError as err:  # S gone already? It may have said why
                    kind, text, _ = self._receive(time.monotonic() + 1)
                    raise _SpawnError(text if kind == "E" else str(err)) from err
        except BaseException:
            self.discard()
            raise

    def _receive(self, deadline: float) -> tuple[str, str, int | None]:
        """(kind, text, sender's pid) of the next control message; kind "" at EOF/timeout."""
        self.ctl.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data, ancillary, _, _ = self.ctl.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS))
        except (OSError, ValueError) as err:
            return "", f"{type(err).__name__}: {err}", None
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:_CREDENTIALS])[0]
        text = data.decode(errors="replace")
        return text[:1], text[1:], pid

    def alive(self) -> bool:
        return len(self.pidfds) == 3 and not _exited(list(self.pidfds.values()), 0)

    def release(self) -> None:
        """Nothing to open: the worker starts the program when ``init`` arrives."""

    def wait(self, timeout: float) -> int | None:
        """The worker's exit status (as a Popen returncode), or None if not known in time."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            kind, text, _ = self._receive(deadline)
            if kind == "X":
                with contextlib.suppress(ValueError):
                    self.status = os.waitstatus_to_exitcode(int(text))
            elif not kind:
                break
        return self.status

    def server_died(self) -> bool:
        return not self.zygote.alive()

    def kill(self, parts: str = "GW") -> None:
        """Kill I (hence everything in the program's PID namespace) and W. S then exits by
        itself and, holding the namespaces last, tears them down off the program's clock."""
        for part in parts:
            if part in self.pidfds:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self.pidfds[part], signal.SIGKILL)

    def reap(self) -> None:
        """Wait until everything the program ran has exited: the worker has, and its cgroup
        holds nothing but S and I (ours, killed or exiting); or else until I has exited, which
        as PID 1 of the program's PID namespace it does only after everything in the namespace
        is dead and reaped. S exits after I and tears the namespaces down, off the clock."""
        if len(self.pidfds) < 3:
            return
        _exited([self.pidfds["W"]], 5)
        ours = {self.pids["C"], self.pids["G"]}
        if self.group is None or not set(self.group.members()) <= ours:
            _exited([self.pidfds["G"]], 5)

    def discard(self) -> None:
        """Kill a sandbox no program will use; its cgroup goes when S has exited."""
        self.kill("CGW")
        self.close()
        if self.group is not None:
            _bury(self.group)
            self.group = None

    def close(self) -> None:
        _close_pipes(self)
        for stream in (self.stdout, self.stderr, self.ctl):
            with contextlib.suppress(OSError):
                stream.close()
        for pidfd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(pidfd)
        self.pidfds = {}


class _WarmPool:
    """One zygote and a few started sandboxes, shared by every thread of this process.

    One zygote serves concurrent programs: all it does per sandbox is one fork, serialized on
    its socket; namespace, mount and cgroup setup run in the forked processes and in short-lived
    fill threads here, in parallel (most of a start is waiting on the kernel). The pool keeps
    ``size`` sandboxes started ahead of time, plus one more started for each thread waiting for
    one, so setup is off the program's path. More zygotes would cost memory and buy nothing. A
    keeper thread owns the zygote: it starts it (from a long-lived thread, since
    --die-with-parent ties the zygote to the thread that started it), restarts it when it dies,
    starts fills, and removes the cgroups of ended programs.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = POOL_SIZE if size is None else size
        self.owner = os.getpid()
        self.cgroups = isolation_level() == "bwrap+cgroup"
        self.lock = threading.Condition()
        self.ready: list[_Warm] = []
        self.limits = SandboxLimits()  # of the sandboxes the fills start
        self.zygote: _Zygote | None = None
        self.failure: str | None = None  # the zygote cannot be started: the pool is finished
        self.last_error: str | None = None  # why the last sandbox failed to start
        self.closed = False
        self.waiting = 0  # threads waiting for a sandbox
        self.filling = self.fill_failures = 0  # sandboxes being started; failed in a row
        self.graves: list[_Cgroup] = []  # cgroups of ended programs, to remove
        self.wake = threading.Event()
        self.keeper = threading.Thread(target=self._keep, name="cgr-sandbox-keeper", daemon=True)
        self.keeper.start()

    def _keep(self) -> None:
        restarts = 0
        while not self.closed:
            self.wake.clear()
            self._dig()
            zygote = self.zygote
            if zygote is not None and not zygote.alive():
                self._lost(zygote)
                zygote = None
            if zygote is None:
                try:
                    zygote = _Zygote()
                except OSError as err:
                    restarts += 1
                    if restarts >= 3:
                        with self.lock:
                            self.failure = str(err)
                            self.lock.notify_all()
                        return
                    time.sleep(0.2 * restarts)
                    continue
                restarts = 0
                with self.lock:
                    if self.closed:
                        zygote.close()
                        return
                    self.zygote = zygote
            if self.fill_failures:  # sandboxes fail to start though the zygote lives: back off
                time.sleep(0.05 * 2 ** min(self.fill_failures, 5))
            with self.lock:
                missing = max(self.size + self.waiting - len(self.ready) - self.filling, 0)
                self.filling += missing
            for _ in range(missing):
                threading.Thread(target=self._fill, args=(zygote,), name="cgr-sandbox-fill",
                                 daemon=True).start()
            self.wake.wait(timeout=0.05 if self.graves else 5)

    def _fill(self, zygote: _Zygote) -> None:
        limits = self.limits
        try:
            box: _Warm | None = _Warm(zygote, limits, self.cgroups)
        except OSError as err:
            log.debug("could not start a warm sandbox: %s", err)
            box, self.last_error = None, str(err)
        with self.lock:
            self.filling -= 1
            if box is not None:
                self.fill_failures = 0
            elif zygote.alive():
                self.fill_failures += 1
            keep = (box is not None and not self.closed and zygote is self.zygote
                    and limits.tmp_bytes == self.limits.tmp_bytes)
            if keep:
                self.ready.append(box)  # type: ignore[arg-type]
            self.lock.notify_all()
        if box is not None and not keep:
            box.discard()
        self.wake.set()

    def _lost(self, zygote: _Zygote) -> None:
        """Forget a dead zygote (and the sandboxes it started, dead with it)."""
        with self.lock:
            if self.zygote is not zygote:
                return
            self.zygote = None
            stale, self.ready = self.ready, []
        log.warning("the warm sandbox server died (%s); restarting it",
                    zygote.stderr() or f"exit status {zygote.proc.returncode}")
        for box in stale:
            box.discard()
        zygote.close()
        self.wake.set()

    def acquire(self, limits: SandboxLimits, timeout: float = 60) -> _Warm | None:
        """A started sandbox in its own cgroup (when cgroups work here) set to ``limits``;
        None when none can be started."""
        deadline = time.monotonic() + timeout
        for _ in range(3):
            stale: list[_Warm] = []
            with self.lock:
                if limits.tmp_bytes != self.limits.tmp_bytes:  # /tmp is mounted at the start
                    stale, self.ready = self.ready, []
                self.limits = limits
                self.waiting += 1
                self.wake.set()
                try:
                    self.lock.wait_for(lambda: self.ready or self.closed or self.failure
                                       or self.fill_failures >= 3,
                                       timeout=max(deadline - time.monotonic(), 0))
                    box = self.ready.pop(0) if self.ready else None
                finally:
                    self.waiting -= 1
            self.wake.set()
            for old in stale:
                old.discard()
            if box is None:
                return None
            try:
                if not (box.zygote.alive() and box.alive()):
                    raise _SpawnError("the warm sandbox is gone")
                if box.group is not None:
                    box.group.set_limits(limits)
                return box
            except OSError as err:
                log.debug("a started warm sandbox cannot be used: %s", err)
                box.discard()
                if not box.zygote.alive():  # and neither can the others it started
                    self._lost(box.zygote)
        return None

    def bury(self, group: _Cgroup) -> None:
        with self.lock:
            self.graves.append(group)
        self.wake.set()

    def _dig(self, final: bool = False) -> None:
        """Remove buried cgroups; one still busy (its S not yet gone) waits for the next
        round, unless ``final``."""
        with self.lock:
            graves, self.graves = self.graves, []
        busy = [group for group in graves if final or not group.remove_now()]
        if final:
            for group in busy:
                group.remove()
        elif busy:
            with self.lock:
                self.graves.extend(busy)

    def close(self) -> None:
        if os.getpid() != self.owner:  # a forked copy of this process: not ours to close
            return
        with self.lock:
            self.closed = True
            stale, self.ready = self.ready, []
            zygote, self.zygote = self.zygote, None
            self.lock.notify_all()
        self.wake.set()
        for box in stale:
            box.discard()
        if zygote is not None:
            zygote.close()
        self._dig(final=True)


_pool: _WarmPool | None = None
_pool_lock = threading.Lock()
_warm_failure: str | None = None


def _bury(group: _Cgroup) -> None:
    """Remove ``group`` soon, from the keeper thread (its processes are dead or dying)."""
    if _pool is not None and not _pool.closed:
        _pool.bury(group)
    else:
        group.remove()


def _warm_pool() -> _WarmPool | None:
    """This process's pool, started (and tried once) on first use; None if warm sandboxes do
    not work here, after one warning."""
    global _pool, _warm_failure
    with _pool_lock:
        if _warm_failure is not None:
            return None
        if _pool is not None and _pool.owner == os.getpid():
            if _pool.failure is None:
                return _pool
            _warm_failure = _pool.failure
            _pool.close()
        else:
            pool = _WarmPool()
            _warm_failure = _probe(pool)
            if _warm_failure is None:
                _pool = pool
                atexit.register(pool.close)
                return pool
            pool.close()
        log.warning("warm sandboxes are not available here (%s); every program starts a fresh "
                    "(cold) sandbox, with the same isolation", _warm_failure)
        return None


def _probe(pool: _WarmPool) -> str | None:
    """None if a warm sandbox runs a program correctly, else why not."""
    box = pool.acquire(SandboxLimits())
    if box is None:
        zygote = pool.zygote
        return (pool.failure or pool.last_error or (zygote.stderr() if zygote else "")
                or "no sandbox started in time")
    result = SandboxResult(status="crashed")
    _execute(box, box.group, "def solve(item, solver):\n    return solver.ask('ready?')\n",
             {"id": "probe", "question": "?", "letters": ["A"], "choices": ["a"]},
             lambda call: {"value": "yes"}, SandboxLimits(wall_seconds=30), 0, result)
    if (result.status, result.answer) != ("ok", "yes"):
        return (f"a probe program ended as {result.status}: {result.message} "
                f"{result.extra.get('stderr', '')}").strip()
    return None


# -- running -------------------------------------------------------------------------------------
class _Channel:
    """The worker's messages and the program's stray output, all read in the calling thread:
    messages are read only when the next one is wanted (a flood waits in the pipe), output
    whenever it arrives (up to a cap; the rest is read and dropped)."""

    def __init__(self, messages: int, stdout: int, stderr: int, output_chars: int) -> None:
        self.messages, self.buffer, self.ended = messages, bytearray(), False
        self.sinks: dict[int, tuple[list[bytes], int]] = {stdout: ([], output_chars),
                                                          stderr: ([], 4000)}
        self.sizes = dict.fromkeys(self.sinks, 0)
        self.poller = select.poll()
        for fd in (messages, stdout, stderr):
            self.poller.register(fd, select.POLLIN)
        self.open = {messages, stdout, stderr}

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None once the worker has closed its end; TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None or self.ended:
                return message
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            for fd, _ in self.poller.poll(wait * 1000 + 1):
                self._read(fd)

    def _parse(self) -> dict[str, Any] | None:
        end = self.buffer.find(b"\n", 0, _MAX_MESSAGE + 1)
        if end < 0:
            if len(self.buffer) > _MAX_MESSAGE or (self.buffer and self.messages not in self.open):
                self._close(self.messages)
                self.buffer.clear()
                self.ended = True
                return {"type": "protocol_error", "message": "message too long"}
            if self.messages not in self.open:
                self.ended = True
            return None
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except Exception as err:  # deep nesting raises RecursionError, not ValueError
            message = {"type": "protocol_error", "message": f"bad message: {type(err).__name__}"}
        return message

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._close(fd)
        elif fd == self.messages:
            self.buffer += chunk
        else:
            sink, cap = self.sinks[fd]
            if self.sizes[fd] < cap:
                sink.append(chunk[: cap - self.sizes[fd]])
            self.sizes[fd] += len(chunk)

    def _close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            self.poller.unregister(fd)

    def drain(self, timeout: float) -> None:
        """Read the output that is left, until its writers are gone or ``timeout``."""
        self._close(self.messages)
        deadline = time.monotonic() + timeout
        while self.open and (wait := deadline - time.monotonic()) > 0:
            for fd, _ in self.poller.poll(wait * 1000 + 1):
                self._read(fd)

    def output(self, fd: int) -> str:
        return b"".join(self.sinks[fd][0]).decode(errors="replace")


def _command(level: str, read_fd: int, write_fd: int, limits: SandboxLimits
             ) -> tuple[list[str], str | None]:
    """The command (behind a start gate) and, for ``process``, its private working folder."""
    gate = ["/bin/sh", "-c", 'read -r _ && exec "$@" </dev/null', "cgr-sandbox"]
    worker = _worker_args(read_fd, write_fd)
    if level.startswith("bwrap"):
        return [*gate, *_bwrap_command(worker, limits)], None
    _warn_weak_isolation()
    workdir = tempfile.mkdtemp(prefix="cgr-program-")
    if _as_root():
        os.chown(workdir, NOBODY, NOBODY)
        if shutil.which("setpriv"):
            worker = [*_drop_privileges(), *worker]
    return [*gate, *worker], workdir


class _Cold:
    """A fresh sandbox for one program: sh (start gate) -> [setpriv -> bwrap ->] python."""

    kind = "cold"

    def __init__(self, level: str, limits: SandboxLimits) -> None:
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        self.workdir: str | None = None
        try:
            command, self.workdir = _command(level, to_worker_r, from_worker_w, limits)
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(to_worker_r, from_worker_w),
                env={**_ENV, "HOME": self.workdir or "/"}, cwd=self.workdir or "/",
                start_new_session=True)
        except OSError:
            for fd in (self.to_worker, self.from_worker):
                os.close(fd)
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self.stdout, self.stderr = self.proc.stdout, self.proc.stderr

    def place(self, group: _Cgroup) -> None:
        group.add(self.proc.pid)  # the gate holds the command until the cgroup holds it

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def server_died(self) -> bool:
        return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def reap(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def close(self) -> None:
        _close_pipes(self)
        for stream in (self.stdout, self.stderr, self.proc.stdin):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_program(program: str, item: Mapping[str, Any], *,
                handle_call: Callable[[dict[str, Any]], dict[str, Any]],
                limits: SandboxLimits = SandboxLimits(), seed: int = 0) -> SandboxResult:
    """Run ``program``'s ``solve(item, solver)``; ``handle_call`` answers each solver call.

    Never raises for anything the program does: every outcome is a status. A call that
    ``handle_call`` refuses with ``{"error": "budget_exceeded"}`` ends the program at once.
    Safe to call from many threads at once.
    """
    level = isolation_level()
    result = SandboxResult(status="crashed", isolation=level)
    started = time.perf_counter()
    box: _Cold | _Warm | None = None
    group: _Cgroup | None = None
    if level.startswith("bwrap") and _warm_wanted():
        box = _warm_box(limits)
        if box is not None:
            group = box.group
            if level == "bwrap+cgroup" and group is None:
                result.isolation = "bwrap"
    try:
        if box is None:
            if level == "bwrap+cgroup":
                try:
                    group = _Cgroup(limits)
                except OSError as err:
                    result.isolation = "bwrap"
                    log.warning("cgroup limits unavailable for this program: %s", err)
            box = _Cold(level, limits)
            if group is not None:
                try:
                    box.place(group)
                except OSError as err:
                    result.isolation = "bwrap"
                    log.warning("cgroup limits unavailable for this program: %s", err)
                    group.remove()
                    group = None
    except Exception as err:  # nothing started: the item still gets a status
        if group is not None:
            group.remove()
        result.message = f"cannot start the sandbox: {type(err).__name__}: {err}"
        result.total_seconds = time.perf_counter() - started
        return result
    result.extra["start"] = box.kind
    _execute(box, group, program, item, handle_call, limits, seed, result)
    result.total_seconds = time.perf_counter() - started
    return result


_last_fallback = 0.0


def _warm_box(limits: SandboxLimits) -> _Warm | None:
    """A warm sandbox, or None (after a warning, at most one a minute) to start a cold one."""
    global _last_fallback
    try:
        pool = _warm_pool()
        if pool is None:
            return None  # warned once already
        box = pool.acquire(limits)
        reason = None if box else pool.last_error or "none could be started in time"
    except Exception as err:  # the warm path must never cost an item
        box, reason = None, f"{type(err).__name__}: {err}"
    if reason is not None and time.monotonic() - _last_fallback > 60:
        _last_fallback = time.monotonic()
        log.warning("no warm sandbox for this program (%s); it starts a cold one", reason)
    return box


def _execute(box: _Cold | _Warm, group: _Cgroup | None, program: str, item: Mapping[str, Any],
             handle_call: Callable[[dict[str, Any]], dict[str, Any]], limits: SandboxLimits,
             seed: int, result: SandboxResult) -> None:
    """Serve one started sandbox (in ``group``, if any) until its program ends, then kill
    everything in it and remove the group."""
    assert box.stdout is not None and box.stderr is not None
    stdout, stderr = box.stdout.fileno(), box.stderr.fileno()
    channel = _Channel(box.from_worker, stdout, stderr, limits.output_chars)
    to_worker = os.fdopen(box.to_worker, "w", encoding="utf-8")
    from_worker = box.from_worker
    box.to_worker = box.from_worker = -1  # both ends are this function's to close now
    program_time = solver_time = 0.0
    try:
        box.release()
        payload = {"type": "init", "program": program, "item": dict(item), "seed": seed,
                   "limits": {"cpu_seconds": limits.cpu_seconds,
                              "memory_bytes": limits.memory_bytes,
                              "file_bytes": limits.file_bytes, "processes": limits.processes,
                              "output_chars": limits.output_chars}}
        to_worker.write(json.dumps(payload) + "\n")
        to_worker.flush()
        clock = time.perf_counter()
        while True:
            remaining = limits.wall_seconds - program_time
            try:
                message = channel.next(max(remaining, 0.001))
            except TimeoutError:
                program_time += time.perf_counter() - clock
                result.status, result.message = "timeout", (
                    f"program ran longer than {limits.wall_seconds:g} s")
                break
            program_time += time.perf_counter() - clock
            if message is None:  # the worker ended without a last word
                result.status, result.message = _death(box.wait(5), group, limits,
                                                       program_time)
                break
            kind = message.get("type")
            if kind == "call":
                waited = time.perf_counter()
                reply = handle_call(message)
                solver_time += time.perf_counter() - waited
                if reply.get("error") == "budget_exceeded":
                    result.status = "budget_exceeded"
                    result.message = "asked for more solver calls than the budget allows"
                    break
                to_worker.write(json.dumps(reply) + "\n")
                to_worker.flush()
                clock = time.perf_counter()
                continue
            if kind == "result":
                result.status, result.answer = "ok", message.get("answer")
            elif kind == "error" and message.get("status") in WORKER_STATUSES:
                result.status = message["status"]
                result.message = str(message.get("message"))[:2000]
                if message.get("traceback"):
                    result.extra["traceback"] = str(message["traceback"])[-4000:]
            else:
                result.status = "protocol_error"
                result.message = str(message.get("message", f"unexpected message {kind!r}"))
            result.output = str(message.get("output", ""))[: limits.output_chars]
            break
    except (OSError, ValueError) as err:  # the worker closed its pipes or went away early
        if result.status == "crashed":
            result.message = f"lost contact with the program: {type(err).__name__}: {err}"
    finally:
        with contextlib.suppress(OSError, ValueError):
            to_worker.close()
        box.kill()
        if group is not None and box.kind == "cold":
            group.kill()  # a warm sandbox's PID namespace goes with its PID 1, below
        box.reap()
        channel.drain(2)
        os.close(from_worker)
        box.close()
        if group is not None:
            if result.status in ("crashed", "runtime_error") and group.oom_killed():
                result.status, result.message = "memory_limit", "killed at the memory limit"
            if box.kind == "warm":  # nothing of the program is left; S may be, briefly
                _bury(group)
            else:
                group.remove()  # kills whatever is left until it can go
    if result.status == "crashed" and box.server_died():
        result.message = f"{result.message} (the warm sandbox server died meanwhile)"
    stray = channel.output(stdout)
    if stray:
        result.output = (result.output + stray)[: limits.output_chars]
    if result.status == "crashed" and channel.sizes[stderr]:
        result.extra["stderr"] = channel.output(stderr)[-2000:]
    result.program_seconds, result.solver_seconds = program_time, solver_time


def _death(returncode: int | None, group: _Cgroup | None, limits: SandboxLimits,
           program_time: float) -> tuple[str, str]:
    if group is not None and group.oom_killed():
        return "memory_limit", "killed at the memory limit"
    code = returncode or 0
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number == signal.SIGXCPU or (number == signal.SIGKILL
                                    and program_time >= limits.cpu_seconds - 0.5):
        return "timeout", f"CPU time over {limits.cpu_seconds} s"
    if number == signal.SIGKILL:
        return "crashed", "killed"
    if number == signal.SIGSEGV:
        return "crashed", "segfault"
    return "crashed", f"the program exited with status {returncode} before answering"
