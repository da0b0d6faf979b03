"""What a sandbox is: the ``Sandbox`` interface every backend implements, its limits, its result
and the exceptions that separate "the sandbox could not run it" from "the program failed".

A program's own failures (it raised, looped, blew its memory, crashed the interpreter, forged
a message) are never exceptions: they are statuses of the ``SandboxResult``. A ``SandboxError``
means no program ran, or the sandbox lost it for reasons of its own; the caller records the
item with the error's message and goes on.

Plugins register either a ``Sandbox`` or (the contract before the interface) a function that
behaves like ``run_program``; ``as_sandbox`` puts such a function behind the interface.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CGRError

__all__ = ["DEFAULT_LIMITS", "WORKER_STATUSES", "CallableSandbox", "HandleCall", "Sandbox",
           "SandboxError", "SandboxLimits", "SandboxResult", "SandboxStartError",
           "SandboxUnavailable", "StartedSandbox", "as_sandbox"]

# Statuses the worker may report (what a run can produce); anything else it sends is a
# protocol error. The parent decides syntax_error, missing_entry (its own parse) and
# budget_exceeded (its own count) itself, and a ``timeout`` only with its own CPU account.
WORKER_STATUSES = ("runtime_error", "timeout", "memory_limit", "entry_mismatch")
TRACEBACK_CHARS = 4000  # of the program's traceback kept in a result (its last lines)
STDERR_CHARS = 2000  # of what the sandbox's processes wrote to the real stderr (the end)

HandleCall = Callable[[dict[str, Any]], dict[str, Any]]  # a solver call -> its reply


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 20.0  # program time, solver waits excluded
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    tmp_bytes: int = 64 << 20
    processes: int = 32
    output_chars: int = 20_000
    total_seconds: float | None = None  # wall time, solver waits included (None: the default)

    @property
    def total_limit(self) -> float:
        """The item's total wall limit: a backstop that counts solver waits too."""
        if self.total_seconds is not None:
            return self.total_seconds
        return 10 * self.wall_seconds + 120

    @classmethod
    def for_timeout(cls, seconds: float, memory_mb: int = 1024) -> SandboxLimits:
        return cls(wall_seconds=seconds, cpu_seconds=max(1, int(seconds) + 1),
                   memory_bytes=memory_mb << 20)


DEFAULT_LIMITS = SandboxLimits()


@dataclass
class SandboxResult:
    status: str  # ok, syntax_error, missing_entry, budget_exceeded, one of WORKER_STATUSES,
    # crashed or protocol_error
    answer: Any = None
    message: str | None = None
    output: str = ""  # what the program printed (captured, capped at output_chars)
    isolation: str | None = "process"  # None: nothing ran (the sandbox failed)
    program_seconds: float = 0.0
    solver_seconds: float = 0.0
    total_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # a backend's own details
    start: str | None = None  # "warm" (started ahead of time) or "cold" (for this program)
    traceback: str | None = None  # of an exception the program raised (its last frames)
    stderr: str | None = None  # written to the real stderr (native crashes, child processes)


class SandboxError(CGRError):
    """The sandbox could not run the program: no fault of the program's, and not a status."""


class SandboxUnavailable(SandboxError):
    """This backend cannot run programs on this host at all; the message says how to fix it."""


class SandboxStartError(SandboxError):
    """One sandbox could not be started (resources, a lost server); another start may work."""


class StartedSandbox(ABC):
    """A sandbox started for one program, waiting for it; ``run`` uses it once."""

    kind: str | None = None  # "warm" or "cold": how it was started
    isolation: str = "unknown"  # what the program gets in it
    limits: SandboxLimits

    @abstractmethod
    def run(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
            seed: int = 0) -> SandboxResult:
        """Run ``program``'s ``solve(item, solver)``; ``handle_call`` answers each solver call
        (``{"error": "budget_exceeded"}`` ends the program at once, as ``budget_exceeded``).

        Limits (``self.limits``, set at the start): program time (solver waits excluded), CPU
        time, memory, file size, /tmp size, processes, output characters. Returns only when
        nothing the program ran is left. Never raises for anything the program does: every
        outcome is a status. Raises ``SandboxError`` only when the sandbox itself failed.
        """

    @abstractmethod
    def kill(self) -> None:
        """End this sandbox and everything in it (a start that no program will use); after
        ``run`` there is nothing left to end. Idempotent, never raises."""


class Sandbox(ABC):
    """A sandbox backend: starts isolated processes that each run one generated program.

    One instance serves a whole run and is called from many threads at once. ``start`` gives
    a sandbox for one program, ``run`` starts one, runs the program in it and kills it;
    ``close`` ends what the backend keeps between programs (pools, servers). Calling the
    instance like ``run_program`` is the plugin contract from before this interface: it never
    raises, and a ``SandboxError`` becomes a ``crashed`` result naming why.
    """

    name: str = "sandbox"

    @abstractmethod
    def isolation_level(self) -> str:
        """The isolation programs get here (``bwrap+cgroup``, ``bwrap``, ``process``, or a
        backend's own word). Raises ``SandboxUnavailable`` when programs cannot run here."""

    @abstractmethod
    def start(self, limits: SandboxLimits) -> StartedSandbox:
        """A sandbox started for one program under ``limits``. Raises ``SandboxUnavailable``
        (never works here) or ``SandboxStartError`` (this start failed)."""

    def run(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
            limits: SandboxLimits = DEFAULT_LIMITS, seed: int = 0) -> SandboxResult:
        """Start a sandbox, run ``program`` in it (see ``StartedSandbox.run``), end it.
        Raises ``SandboxError`` when the sandbox could not run the program."""
        started = time.perf_counter()
        box = self.start(limits)
        try:
            result = box.run(program, item, handle_call=handle_call, seed=seed)
        finally:
            box.kill()
        result.total_seconds = time.perf_counter() - started
        return result

    def __call__(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
                 limits: SandboxLimits = DEFAULT_LIMITS, seed: int = 0) -> SandboxResult:
        started = time.perf_counter()
        try:
            return self.run(program, item, handle_call=handle_call, limits=limits, seed=seed)
        except SandboxError as err:
            return SandboxResult(status="crashed", message=str(err), isolation=None,
                                 total_seconds=time.perf_counter() - started,
                                 extra={"sandbox_error": type(err).__name__})

    def close(self) -> None:  # noqa: B027 - a no-op default, like Inspect's lifecycle hooks
        """End what this backend keeps between programs; the default keeps nothing."""


class _CalledOnce(StartedSandbox):
    """A plugin function's "sandbox": nothing starts until the function runs the program."""

    def __init__(self, run_program: Callable[..., SandboxResult], limits: SandboxLimits) -> None:
        self.run_program, self.limits = run_program, limits

    def run(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
            seed: int = 0) -> SandboxResult:
        return self.run_program(program, item, handle_call=handle_call, limits=self.limits,
                                seed=seed)

    def kill(self) -> None:
        """The function ends what it started before it returns."""


class CallableSandbox(Sandbox):
    """A ``run_program``-like function (``(program, item, *, handle_call, limits, seed) ->
    SandboxResult``) behind the interface; its results say the isolation it gave."""

    def __init__(self, run_program: Callable[..., SandboxResult], name: str = "plugin") -> None:
        self.run_program, self.name = run_program, name

    def isolation_level(self) -> str:
        return "unknown"

    def start(self, limits: SandboxLimits) -> StartedSandbox:
        return _CalledOnce(self.run_program, limits)


def as_sandbox(backend: Any, name: str = "plugin") -> Sandbox:
    """``backend`` (what a plugin registered) as a ``Sandbox``."""
    if isinstance(backend, Sandbox):
        return backend
    if callable(backend):
        return CallableSandbox(backend, name)
    raise SandboxError(f"sandbox {name!r} is neither a Sandbox nor a run_program-like function")
