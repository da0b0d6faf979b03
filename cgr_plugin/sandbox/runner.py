"""Run one untrusted program in an isolated process and serve its solver calls: the built-in
sandbox backends and ``run_program``.

- ``bwrap`` (``BWRAP``, the default): bubblewrap, at the best level this host gives
  (``isolation``); warm starts by default (``CGR_SANDBOX_WARM=0`` forces cold), cold where the
  warm path cannot be set up. Where bubblewrap is unusable programs do not run: each gets a
  ``SandboxUnavailable`` saying how to install it or opt in, unless ``CGR_SANDBOX=process``
  (the opt-in) lets them run at level ``process``.
- ``process`` (``PROCESS``, chosen with ``sandbox=process``): always a plain child process
  with an empty environment, a private working folder and rlimits, which does NOT stop network
  access or file writes; cgr warns loudly once.

The model stays in this process; programs never run in it, and it never forks (subprocesses
start by vfork/exec, without ``preexec_fn``). How the parts fit: ``bwrap`` builds the command,
``cgroups`` caps each program, ``cold`` and ``warm``/``pool`` start sandboxes, ``execute``
serves one through its program over ``channel``. The record says the isolation either way, and
``SandboxResult.start`` says ``warm`` or ``cold``. ``run_program`` may be called from many
threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from .cold import ColdSandbox
from .interface import (
    DEFAULT_LIMITS,
    HandleCall,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    StartedSandbox,
)
from .isolation import isolation_level, unavailable, weak_isolation_allowed
from .pool import WarmSandbox
from .warm import WARM_ENV, warm_wanted

__all__ = ["BWRAP", "PROCESS", "WARM_ENV", "BwrapSandbox", "ProcessSandbox", "SandboxLimits",
           "SandboxResult", "isolation_level", "run_program"]

log = logging.getLogger(__name__)


class BwrapSandbox(Sandbox):
    """The built-in sandbox: bubblewrap, warm when it can be, cold otherwise."""

    name = "bwrap"

    def __init__(self) -> None:
        self.warm = WarmSandbox()
        self._last_fallback = 0.0
        self._lock = threading.Lock()

    def isolation_level(self) -> str:
        level = isolation_level()
        if level != "process":
            return level
        if weak_isolation_allowed():
            return "process"
        raise unavailable()

    def start(self, limits: SandboxLimits) -> StartedSandbox:
        level = self.isolation_level()
        if level.startswith("bwrap") and warm_wanted():
            box = self._warm_start(limits)
            if box is not None:
                return box
        return ColdSandbox(level).start(limits)

    def _warm_start(self, limits: SandboxLimits) -> StartedSandbox | None:
        """A warm sandbox, or None (after a warning, at most one a minute) to start a cold one."""
        try:
            return self.warm.start(limits)
        except SandboxUnavailable:
            return None  # warned once already
        except Exception as err:  # the warm path must never cost an item
            reason = str(err) or type(err).__name__
        with self._lock:
            due = time.monotonic() - self._last_fallback > 60
            if due:
                self._last_fallback = time.monotonic()
        if due:
            log.warning("no warm sandbox for this program (%s); it starts a cold one", reason)
        return None


class ProcessSandbox(Sandbox):
    """Weak isolation, asked for by name: a plain child process, never bubblewrap."""

    name = "process"

    def isolation_level(self) -> str:
        return "process"

    def start(self, limits: SandboxLimits) -> StartedSandbox:
        return ColdSandbox("process").start(limits)  # which warns, once


BWRAP = BwrapSandbox()
PROCESS = ProcessSandbox()


def run_program(program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
                limits: SandboxLimits = DEFAULT_LIMITS, seed: int = 0) -> SandboxResult:
    """Run ``program``'s ``solve(item, solver)`` in the built-in sandbox; ``handle_call``
    answers each solver call.

    Never raises: every outcome is a status, and a sandbox that cannot run it (no usable
    bubblewrap, a failed start) gives ``crashed`` with the reason. A call that ``handle_call``
    refuses with ``{"error": "budget_exceeded"}`` ends the program at once. Safe to call from
    many threads at once.
    """
    return BWRAP(program, item, handle_call=handle_call, limits=limits, seed=seed)
