"""Run one untrusted program in an isolated process and serve its solver calls.

Isolation levels, best first (recorded in every record):

- ``bwrap+cgroup``: bubblewrap namespaces (no network, read-only system, private /tmp, no home,
  no project files, empty environment, all capabilities dropped) plus a cgroup that caps the
  number of processes and the memory of the whole program, fork bombs included;
- ``bwrap``: the same without the cgroup (rlimits only);
- ``process``: no bubblewrap on this machine: a plain child process with an empty environment,
  a temporary working folder and rlimits. It does NOT stop network access or file writes, and
  cgr warns loudly when it has to use it.

The model stays in this process; programs never run in it, and it never forks (subprocesses
start by vfork/exec, without ``preexec_fn``). Program time excludes time spent waiting for the
solver: the clock stops while a call is being answered.
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
import sysconfig
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
_MAX_MESSAGE = 1 << 20  # one protocol line; longer is a protocol violation


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 20.0  # program time, solver waits excluded
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    tmp_bytes: int = 64 << 20
    processes: int = 32
    output_chars: int = 20_000


@dataclass
class SandboxResult:
    status: str  # ok, syntax_error, missing_entry, runtime_error, timeout, memory_limit,
    #              budget_exceeded, crashed, protocol_error
    answer: Any = None
    message: str | None = None
    output: str = ""
    isolation: str = "process"
    program_seconds: float = 0.0
    solver_seconds: float = 0.0
    total_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# -- isolation -----------------------------------------------------------------------------------
def _python() -> str:
    return os.path.realpath(sys.executable)  # a venv's python resolves to its base interpreter


def _python_root() -> Path:
    return Path(sys.base_prefix).resolve()


def _bwrap_command(read_fd: int, write_fd: int, limits: SandboxLimits) -> list[str]:
    root = _python_root()
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/usr/{link}").is_dir():
            cmd += ["--symlink", f"usr/{link}", f"/{link}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes),
            "--tmpfs", "/tmp"]
    if not str(root).startswith("/usr/"):
        cmd += ["--ro-bind", str(root), str(root)]
    purelib = Path(sysconfig.get_paths(vars={"base": str(root)})["purelib"])
    if purelib.is_dir() and str(purelib).startswith(str(root)):
        cmd += ["--tmpfs", str(purelib)]  # installed packages stay out of sight
    cmd += ["--ro-bind", str(WORKER), "/cgr/worker.py", "--remount-ro", "/", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            "--chdir", "/tmp", _python(), "-I", "-S", "/cgr/worker.py", str(read_fd),
            str(write_fd)]
    return cmd


@lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(
        ["bwrap", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/usr",
         "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
         "--proc", "/proc", "--dev", "/dev", "/usr/bin/true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        log.warning("bubblewrap is installed but cannot start a sandbox here: %s",
                    probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


class _Cgroup:
    """A cgroup-v1 pids + memory group for one program (what this machine kind offers)."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.dirs: list[Path] = []
        name = f"cgr-{uuid.uuid4().hex[:12]}"
        for controller, settings in (
                ("pids", {"pids.max": str(limits.processes)}),
                ("memory", {"memory.limit_in_bytes": str(limits.memory_bytes * 2)})):
            folder = _own_cgroup(controller) / name
            folder.mkdir()
            self.dirs.append(folder)
            for key, value in settings.items():
                (folder / key).write_text(value)

    def add(self, pid: int) -> None:
        for folder in self.dirs:
            (folder / "cgroup.procs").write_text(str(pid))

    def kill(self) -> None:
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

    def oom_killed(self) -> bool:
        for folder in self.dirs:
            failcnt = folder / "memory.failcnt"
            if failcnt.exists() and failcnt.read_text().strip() not in ("", "0"):
                return True
        return False

    def remove(self) -> None:
        for folder in self.dirs:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.02)


def _own_cgroup(controller: str) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise OSError(f"no cgroup-v1 {controller} controller")


@lru_cache(maxsize=1)
def _cgroups_work() -> bool:
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
        log.warning("!!! bubblewrap (bwrap) is not available: generated programs run in plain "
                    "child processes that CAN reach the network and write files. Install "
                    "bubblewrap (apt-get install bubblewrap) for real isolation. !!!")


# -- running -------------------------------------------------------------------------------------
def _drain(stream: Any, sink: list[bytes], cap: int) -> None:
    size = 0
    while chunk := stream.read(65536):
        if size < cap:
            sink.append(chunk[: cap - size])
        size += len(chunk)


def _reader(fd: int, messages: queue.Queue) -> None:
    with os.fdopen(fd, "rb") as stream:
        while True:
            line = stream.readline(_MAX_MESSAGE + 1)
            if not line:
                messages.put(None)
                return
            if len(line) > _MAX_MESSAGE or not line.endswith(b"\n"):
                messages.put({"type": "protocol_error", "message": "message too long"})
                messages.put(None)
                return
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                message = {"type": "protocol_error", "message": f"bad message: {err}"}
            messages.put(message)


def run_program(program: str, item: Mapping[str, Any], *,
                handle_call: Callable[[dict[str, Any]], dict[str, Any]],
                limits: SandboxLimits = SandboxLimits(), seed: int = 0) -> SandboxResult:
    """Run ``program``'s ``solve(item, solver)``; ``handle_call`` answers each solver call."""
    level = isolation_level()
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    group: _Cgroup | None = None
    workdir = None
    if level.startswith("bwrap"):
        command = _bwrap_command(to_worker_r, from_worker_w, limits)
        env = {"PATH": "/usr/bin:/bin"}
        cwd = "/"
    else:
        _warn_weak_isolation()
        workdir = tempfile.mkdtemp(prefix="cgr-program-")
        command = [_python(), "-I", "-S", str(WORKER), str(to_worker_r), str(from_worker_w)]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0"}
        cwd = workdir
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=(to_worker_r, from_worker_w),
                            env=env, cwd=cwd, start_new_session=True)
    os.close(to_worker_r)
    os.close(from_worker_w)
    result = SandboxResult(status="crashed", isolation=level)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    messages: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_drain, args=(proc.stdout, out_chunks,
                                                     limits.output_chars), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err_chunks, 4000), daemon=True),
               threading.Thread(target=_reader, args=(from_worker_r, messages), daemon=True)]
    for thread in threads:
        thread.start()
    to_worker = os.fdopen(to_worker_w, "w", encoding="utf-8")
    try:
        if level == "bwrap+cgroup":
            try:
                group = _Cgroup(limits)
                group.add(proc.pid)
            except OSError as err:
                result.isolation = level = "bwrap"
                log.warning("cgroup limits unavailable for this program: %s", err)
        payload = {"type": "init", "program": program, "item": dict(item), "seed": seed,
                   "limits": {"cpu_seconds": limits.cpu_seconds,
                              "memory_bytes": limits.memory_bytes,
                              "file_bytes": limits.file_bytes, "processes": limits.processes,
                              "output_chars": limits.output_chars}}
        to_worker.write(json.dumps(payload) + "\n")
        to_worker.flush()
        program_time = solver_time = 0.0
        clock = time.perf_counter()
        while True:
            remaining = limits.wall_seconds - program_time
            try:
                message = messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                result.status, result.message = "timeout", (
                    f"program ran longer than {limits.wall_seconds:g} s")
                break
            program_time += time.perf_counter() - clock
            if message is None:  # the worker died without a last word
                proc.wait(timeout=5)
                result.status, result.message = _death(proc.returncode, group, limits)
                break
            kind = message.get("type")
            if kind == "call":
                waited = time.perf_counter()
                reply = handle_call(message)
                solver_time += time.perf_counter() - waited
                try:
                    to_worker.write(json.dumps(reply) + "\n")
                    to_worker.flush()
                except (BrokenPipeError, OSError):
                    pass
                clock = time.perf_counter()
                continue
            if kind == "result":
                result.status, result.answer = "ok", message.get("answer")
            elif kind == "error":
                result.status = str(message.get("status", "runtime_error"))
                result.message = message.get("message")
                if message.get("traceback"):
                    result.extra["traceback"] = message["traceback"]
            else:
                result.status = "protocol_error"
                result.message = str(message.get("message", f"unexpected message {kind!r}"))
            result.output = str(message.get("output", ""))[: limits.output_chars]
            break
        result.program_seconds, result.solver_seconds = program_time, solver_time
    finally:
        with contextlib.suppress(OSError):
            to_worker.close()
        _stop(proc, group)
        for thread in threads:
            thread.join(timeout=2)
        if group is not None:
            if result.status in ("crashed", "runtime_error") and group.oom_killed():
                result.status = "memory_limit"
            group.remove()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    stray = b"".join(out_chunks).decode(errors="replace")
    if stray:
        result.output = (result.output + stray)[: limits.output_chars]
    if result.status == "crashed" and err_chunks:
        result.extra["stderr"] = b"".join(err_chunks).decode(errors="replace")[-2000:]
    result.total_seconds = time.perf_counter() - started
    return result


def _death(returncode: int | None, group: _Cgroup | None, limits: SandboxLimits
           ) -> tuple[str, str]:
    if group is not None and group.oom_killed():
        return "memory_limit", "killed at the memory limit"
    signals = {signal.SIGXCPU: ("timeout", f"CPU time over {limits.cpu_seconds} s"),
               signal.SIGKILL: ("crashed", "killed"), signal.SIGSEGV: ("crashed", "segfault")}
    code = returncode or 0
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number in signals:
        return signals[number]
    return "crashed", f"worker exited with status {returncode} before answering"


def _stop(proc: subprocess.Popen, group: _Cgroup | None) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if group is not None:
        group.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
