"""Serve one started sandbox (cold or warm) through its program: send the program, answer its
solver calls, read its last word, then kill everything it ran and turn how it ended into one
status.

Program time excludes time spent waiting for the solver: the clock stops while a call is
being answered (threads the program started keep running meanwhile; the CPU account of the
program's cgroup does not stop). Every item also has a total wall limit that counts solver
waits (``SandboxLimits.total_limit``), a backstop whatever the program does. Messages to the
worker are written without blocking this process: a program that stops reading them (a full
or shrunken pipe) ends as ``protocol_error`` at its deadline, never hangs the evaluation.
The model stays in this process; programs never run in it, and it never forks.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from .cgroups import Cgroup
from .channel import Channel
from .entry import read_entry
from .interface import (
    STDERR_CHARS,
    TRACEBACK_CHARS,
    WORKER_STATUSES,
    HandleCall,
    SandboxLimits,
    SandboxResult,
)

__all__ = ["Box", "close_pipes", "execute"]


class Box(Protocol):
    """What ``execute`` needs of a started sandbox (cold.ColdBox, warm.WarmBox)."""

    kind: str
    isolation: str
    limits: SandboxLimits
    group: Cgroup | None
    to_worker: int
    from_worker: int
    stdout: IO[bytes]
    stderr: IO[bytes]

    def release(self) -> None: ...  # let the worker start
    def wait(self, timeout: float) -> int | None: ...  # the worker's exit status
    def stop(self) -> None: ...  # kill what the program runs (SIGKILL)
    def reap(self) -> None: ...  # wait until nothing of the program is left
    def close(self) -> None: ...  # close what this process holds of it
    def drop_group(self) -> None: ...  # remove the (emptied) cgroup, now or soon
    def server_died(self) -> bool: ...


def close_pipes(box: Any) -> None:
    """Close a sandbox's protocol pipes unless ``execute`` already owns them (then -1)."""
    for fd in (box.to_worker, box.from_worker):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    box.to_worker = box.from_worker = -1


@dataclass
class _Clock:
    program: float = 0.0  # seconds the program ran, solver waits excluded
    solver: float = 0.0  # seconds spent answering its solver calls
    began: float = 0.0  # perf_counter at the start: the total wall limit counts from here

    def total_left(self, limits: SandboxLimits) -> float:
        return limits.total_limit - (time.perf_counter() - self.began)


class _CpuAccount:
    """The CPU time of everything in the program's cgroup since it started (solver waits
    included: the program's other processes and threads keep running meanwhile), checked
    every ``POLL`` seconds; where the group counts no CPU, only the rlimits hold."""

    POLL = 0.1

    def __init__(self, group: Cgroup | None, limit: float) -> None:
        self.group, self.limit = group, limit
        self.start = group.cpu_seconds() if group is not None else None
        self.poll = self.POLL if self.start is not None else float("inf")
        self.read_at, self.spent = time.monotonic(), False

    def used(self) -> float | None:
        """CPU seconds used so far (read now)."""
        now = self.group.cpu_seconds() if self.group is not None else None
        return None if now is None or self.start is None else now - self.start

    def over(self) -> bool:
        """Whether the account has run out (read at most every ``POLL`` seconds)."""
        if self.start is None or self.spent:
            return self.spent
        if time.monotonic() - self.read_at >= self.POLL:
            used = self.used()
            self.read_at, self.spent = time.monotonic(), used is not None and used >= self.limit
        return self.spent

    @contextlib.contextmanager
    def watching(self, stop: Any) -> Any:
        """While the solver answers: ``stop()`` the sandbox if the CPU account runs out."""
        if self.start is None:
            yield
            return
        token = object()
        _WATCHDOG.watch(token, self, stop)
        try:
            yield
        finally:
            _WATCHDOG.unwatch(token)

    def message(self) -> str:
        return (f"CPU time over {self.limit:g} s (all the program's processes together, solver "
                "waits included)")


class _Watchdog:
    """One thread for every program waiting for the solver: every ``POLL`` seconds it stops
    those whose CPU account has run out (threads and children keep running meanwhile)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watched: dict[object, tuple[_CpuAccount, Any]] = {}
        self.thread: threading.Thread | None = None

    def watch(self, token: object, cpu: _CpuAccount, stop: Any) -> None:
        with self.lock:
            self.watched[token] = (cpu, stop)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="cgr-cpu-watchdog",
                                               daemon=True)
                self.thread.start()

    def unwatch(self, token: object) -> None:
        """After this returns, ``token``'s sandbox is never stopped by the watchdog."""
        with self.lock:
            self.watched.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(_CpuAccount.POLL)
            with self.lock:
                for token, (cpu, stop) in list(self.watched.items()):
                    if cpu.over():
                        del self.watched[token]
                        with contextlib.suppress(Exception):
                            stop()


_WATCHDOG = _Watchdog()


class _Unread(Exception):
    """The worker did not take a message in time (it stopped reading its input)."""


def execute(box: Box, program: str, item: Mapping[str, Any], handle_call: HandleCall,
            seed: int) -> SandboxResult:
    """Run ``program`` in ``box`` until it ends, then kill everything in it and remove its
    group. Never raises for anything the program does."""
    result = SandboxResult(status="crashed", isolation=box.isolation, start=box.kind)
    stdout, stderr = box.stdout.fileno(), box.stderr.fileno()
    channel = Channel(box.from_worker, stdout, stderr, box.limits.output_chars)
    to_worker, from_worker = box.to_worker, box.from_worker
    box.to_worker = box.from_worker = -1  # both ends are this function's to close now
    os.set_blocking(to_worker, False)
    clock = _Clock(began=time.perf_counter())
    entry = read_entry(program)
    try:
        if entry.status != "ok":  # decided here, from the text: the program never runs
            result.status, result.message = entry.status, entry.message
        else:
            box.release()
            # The worker reads its init before any program code runs, so a slow read (a
            # multi-MB program on a busy machine) is not the program's doing: the item's total
            # wall limit bounds it, not the program's own time.
            _send(to_worker, _init(program, item, seed, box.limits, entry.line),
                  clock.total_left(box.limits))
            _converse(box, channel, to_worker, handle_call, result, clock)
    except _Unread:
        result.status = "protocol_error"
        result.message = "the program stopped reading its solver replies"
    except (OSError, ValueError) as err:  # the worker closed its pipes or went away early
        if result.status == "crashed":
            result.message = f"lost contact with the program: {type(err).__name__}: {err}"
    finally:
        with contextlib.suppress(OSError):
            os.close(to_worker)
        _tear_down(box, channel, from_worker, result)
    if result.status == "crashed" and box.server_died():
        result.message = f"{result.message} (the warm sandbox server died meanwhile)"
    _collect_output(channel, stdout, stderr, box.limits, result)
    result.program_seconds, result.solver_seconds = clock.program, clock.solver
    return result


def _init(program: str, item: Mapping[str, Any], seed: int, limits: SandboxLimits,
          entry_line: int | None) -> dict[str, Any]:
    return {"type": "init", "program": program, "item": dict(item), "seed": seed,
            "entry_line": entry_line,
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                       "file_bytes": limits.file_bytes, "processes": limits.processes,
                       "output_chars": limits.output_chars}}


def _send(to_worker: int, message: dict[str, Any], timeout: float) -> None:
    """Write one message to the (non-blocking) pipe within ``timeout`` seconds, or _Unread."""
    data = memoryview((json.dumps(message) + "\n").encode("utf-8", "surrogatepass"))
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(to_worker, select.POLLOUT)
    while data:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise _Unread
        if not poller.poll(wait * 1000 + 1):
            continue
        try:
            data = data[os.write(to_worker, data):]
        except BlockingIOError:
            continue


def _converse(box: Box, channel: Channel, to_worker: int, handle_call: HandleCall,
              result: SandboxResult, clock: _Clock) -> None:
    """Answer the program's solver calls until its last word, its death or its time is up."""
    limits = box.limits
    cpu = _CpuAccount(box.group, limits.cpu_seconds)
    started = time.perf_counter()
    while True:
        ran = clock.program + time.perf_counter() - started
        remaining, total = limits.wall_seconds - ran, clock.total_left(limits)
        if cpu.over() or remaining <= 0 or total <= 0:
            clock.program = ran
            result.status = "timeout"
            result.message = (cpu.message() if cpu.over() else _over_total(limits)
                              if total <= 0 else
                              f"program ran longer than {limits.wall_seconds:g} s")
            return
        try:
            message = channel.next(max(min(remaining, total, cpu.poll), 0.001))
        except TimeoutError:
            continue
        clock.program += time.perf_counter() - started
        if message is None:  # the worker ended without a last word
            result.status, result.message = _death(box.wait(5), box.group, limits,
                                                   clock.program)
            if result.status != "memory_limit" and cpu.over():
                result.status, result.message = "timeout", cpu.message()
            return
        if message.get("type") != "call":
            _last_word(message, limits, result, cpu)
            return
        waited = time.perf_counter()
        with cpu.watching(box.stop):
            reply = handle_call(message)
        clock.solver += time.perf_counter() - waited
        if reply.get("error") == "budget_exceeded":
            result.status = "budget_exceeded"
            result.message = "asked for more solver calls than the budget allows"
            return
        if cpu.over() or clock.total_left(limits) <= 0:
            result.status = "timeout"
            result.message = cpu.message() if cpu.over() else _over_total(limits)
            return
        started = time.perf_counter()  # a reply the program is slow to take is program time
        _send(to_worker, {**reply, "id": message.get("id")},
              max(min(limits.wall_seconds - clock.program, clock.total_left(limits)), 0.001))


def _over_total(limits: SandboxLimits) -> str:
    return (f"the item ran longer than its total wall limit of {limits.total_limit:g} s "
            "(solver waits included)")


def _last_word(message: dict[str, Any], limits: SandboxLimits, result: SandboxResult,
               cpu: _CpuAccount) -> None:
    """The worker's ``result`` or ``error``; anything else is the program forging messages
    (so is a CPU ``timeout`` that this process's own CPU account does not bear out)."""
    kind = message.get("type")
    used = cpu.used() if message.get("status") == "timeout" else None
    forged_timeout = used is not None and used < limits.cpu_seconds - 0.5
    if kind == "result":
        result.status, result.answer = "ok", message.get("answer")
    elif kind == "error" and message.get("status") in WORKER_STATUSES and not forged_timeout:
        result.status = message["status"]
        result.message = str(message.get("message"))[:2000]
        if message.get("traceback"):
            result.traceback = str(message["traceback"])[-TRACEBACK_CHARS:]
    else:
        result.status = "protocol_error"
        result.message = str(message.get("message", f"unexpected message {kind!r}"))
    result.output = str(message.get("output", ""))[: limits.output_chars]


def _tear_down(box: Box, channel: Channel, from_worker: int, result: SandboxResult) -> None:
    """Kill everything the program ran, read what it left in the pipes, remove its group
    (a program killed at its memory cap is ``memory_limit``, whatever it said last)."""
    box.stop()
    box.reap()
    channel.drain(2)
    os.close(from_worker)
    box.close()
    if box.group is not None:
        if result.status in ("crashed", "runtime_error") and box.group.oom_killed():
            result.status, result.message = "memory_limit", "killed at the memory limit"
        box.drop_group()


def _collect_output(channel: Channel, stdout: int, stderr: int, limits: SandboxLimits,
                    result: SandboxResult) -> None:
    stray = channel.output(stdout)
    if stray:
        result.output = (result.output + stray)[: limits.output_chars]
    if channel.sizes[stderr]:
        result.stderr = channel.output(stderr)[-STDERR_CHARS:]


def _death(returncode: int | None, group: Cgroup | None, limits: SandboxLimits,
           program_time: float) -> tuple[str, str]:
    """The status of a worker that died without a last word."""
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
