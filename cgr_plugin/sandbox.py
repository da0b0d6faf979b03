"""Run one untrusted program in an isolated process and serve its solver calls.

Isolation levels, best first (recorded in every record):

- ``bwrap+cgroup``: bubblewrap namespaces (user, PID, network, IPC, UTS), all capabilities
  dropped, a read-only root with a private size-capped /tmp, no home, no project files, an empty
  environment, rlimits, plus a cgroup capping the processes and memory of the whole program;
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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
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
WORKER = Path(__file__).with_name("_sandbox_worker.py")
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


def _bwrap_command(worker: list[str], limits: SandboxLimits) -> list[str]:
    cmd = [*_drop_privileges(), "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/usr/{link}").is_dir():
            cmd += ["--symlink", f"usr/{link}", f"/{link}"]
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
        name = f"cgr-{uuid.uuid4().hex[:12]}"
        settings = {"pids": {"pids.max": str(limits.processes)},
                    "memory": {"memory.limit_in_bytes": str(limits.memory_bytes * 2)}}
        try:
            for controller in self.CONTROLLERS:
                folder = _own_cgroup(controller) / name
                folder.mkdir()
                self.dirs.append(folder)
                for key, value in settings[controller].items():
                    (folder / key).write_text(value)
        except OSError:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        for folder in self.dirs:
            (folder / "cgroup.procs").write_text(str(pid))

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

    def remove(self) -> None:
        for folder in self.dirs:
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.02)


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


# -- running -------------------------------------------------------------------------------------
def _drain(stream: Any, sink: list[bytes], cap: int) -> None:
    size = 0
    with contextlib.suppress(OSError, ValueError):
        while chunk := stream.read(65536):
            if size < cap:
                sink.append(chunk[: cap - size])
            size += len(chunk)


class _Reader(threading.Thread):
    """Parses the worker's messages; a small queue gives back-pressure against floods."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.messages, self.stopped = fd, queue.Queue(maxsize=2), threading.Event()

    def _put(self, message: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.messages.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        with os.fdopen(self.fd, "rb") as stream:
            while not self.stopped.is_set():
                try:
                    line = stream.readline(_MAX_MESSAGE + 1)
                except (OSError, ValueError):
                    line = b""
                if not line:
                    self._put(None)
                    return
                if len(line) > _MAX_MESSAGE or not line.endswith(b"\n"):
                    self._put({"type": "protocol_error", "message": "message too long"})
                    self._put(None)
                    return
                try:
                    message = json.loads(line)
                    if not isinstance(message, dict):
                        raise ValueError("not an object")
                except Exception as err:  # deep nesting raises RecursionError, not ValueError
                    message = {"type": "protocol_error",
                               "message": f"bad message: {type(err).__name__}"}
                if not self._put(message):
                    return


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


def run_program(program: str, item: Mapping[str, Any], *,
                handle_call: Callable[[dict[str, Any]], dict[str, Any]],
                limits: SandboxLimits = SandboxLimits(), seed: int = 0) -> SandboxResult:
    """Run ``program``'s ``solve(item, solver)``; ``handle_call`` answers each solver call.

    Never raises for anything the program does: every outcome is a status. A call that
    ``handle_call`` refuses with ``{"error": "budget_exceeded"}`` ends the program at once.
    """
    level = isolation_level()
    result = SandboxResult(status="crashed", isolation=level)
    started = time.perf_counter()
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    command, workdir = _command(level, to_worker_r, from_worker_w, limits)
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(to_worker_r, from_worker_w),
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                                     "HOME": workdir or "/", "PYTHONHASHSEED": "0"},
                                cwd=workdir or "/", start_new_session=True)
    except OSError as err:
        for fd in (to_worker_r, to_worker_w, from_worker_r, from_worker_w):
            os.close(fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        result.message = f"cannot start the sandbox: {err}"
        return result
    os.close(to_worker_r)
    os.close(from_worker_w)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    reader = _Reader(from_worker_r)
    threads = [threading.Thread(target=_drain, args=(proc.stdout, out_chunks,
                                                     limits.output_chars), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err_chunks, 4000),
                                daemon=True), reader]
    for thread in threads:
        thread.start()
    to_worker = os.fdopen(to_worker_w, "w", encoding="utf-8")
    group: _Cgroup | None = None
    program_time = solver_time = 0.0
    try:
        if level == "bwrap+cgroup":
            try:  # the gate holds the command until the cgroup holds it, children included
                group = _Cgroup(limits)
                group.add(proc.pid)
            except OSError as err:
                result.isolation = "bwrap"
                log.warning("cgroup limits unavailable for this program: %s", err)
                group = None
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
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
                message = reader.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                program_time += time.perf_counter() - clock
                result.status, result.message = "timeout", (
                    f"program ran longer than {limits.wall_seconds:g} s")
                break
            program_time += time.perf_counter() - clock
            if message is None:  # the worker ended without a last word
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                result.status, result.message = _death(proc.returncode, group, limits,
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
        reader.stopped.set()
        with contextlib.suppress(OSError, ValueError):
            to_worker.close()
        _stop(proc, group)
        for thread in threads:
            thread.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
        if group is not None:
            if result.status in ("crashed", "runtime_error") and group.oom_killed():
                result.status, result.message = "memory_limit", "killed at the memory limit"
            group.remove()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    stray = b"".join(out_chunks).decode(errors="replace")
    if stray:
        result.output = (result.output + stray)[: limits.output_chars]
    if result.status == "crashed" and err_chunks:
        result.extra["stderr"] = b"".join(err_chunks).decode(errors="replace")[-2000:]
    result.program_seconds, result.solver_seconds = program_time, solver_time
    result.total_seconds = time.perf_counter() - started
    return result


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


def _stop(proc: subprocess.Popen, group: _Cgroup | None) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if group is not None:
        group.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
