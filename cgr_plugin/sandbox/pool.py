"""The warm pool: one zygote and a few started warm sandboxes, shared by every thread of this
process, and the ``warm`` sandbox backend that takes its sandboxes from it.

If the warm path cannot be set up here (nested user namespaces refused, say), cgr warns once
and every program starts cold; a zygote that dies is restarted (programs running in it end as
``crashed``, with a note). An idle started sandbox costs three processes and about 6 MB (PSS);
``POOL_SIZE`` are kept.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from .cgroups import Cgroup
from .interface import Sandbox, SandboxLimits, SandboxStartError, SandboxUnavailable
from .isolation import isolation_level
from .warm import WarmBox
from .zygote_client import SpawnError, Zygote

__all__ = ["POOL_SIZE", "WarmPool", "WarmSandbox", "warm_pool"]

log = logging.getLogger(__name__)
POOL_SIZE = 6  # sandboxes kept started, each in its own cgroup, waiting for a program


class WarmPool:
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
        self.ready: list[WarmBox] = []
        self.limits = SandboxLimits()  # of the sandboxes the fills start
        self.zygote: Zygote | None = None
        self.failure: str | None = None  # the zygote cannot be started: the pool is finished
        self.last_error: str | None = None  # why the last sandbox failed to start
        self.closed = False
        self.waiting = 0  # threads waiting for a sandbox
        self.filling = self.fill_failures = 0  # sandboxes being started; failed in a row
        self.graves: list[Cgroup] = []  # cgroups of ended programs, to remove
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
                    zygote = Zygote()
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

    def _fill(self, zygote: Zygote) -> None:
        limits = self.limits
        try:
            box: WarmBox | None = WarmBox(zygote, limits, self.cgroups, self.bury)
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

    def _lost(self, zygote: Zygote) -> None:
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

    def acquire(self, limits: SandboxLimits, timeout: float = 60) -> WarmBox | None:
        """A started sandbox in its own cgroup (when cgroups work here) set to ``limits``;
        None when none can be started."""
        deadline = time.monotonic() + timeout
        for _ in range(3):
            stale: list[WarmBox] = []
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
                    raise SpawnError("the warm sandbox is gone")
                box.set_limits(limits)
                return box
            except OSError as err:
                log.debug("a started warm sandbox cannot be used: %s", err)
                box.discard()
                if not box.zygote.alive():  # and neither can the others it started
                    self._lost(box.zygote)
        return None

    def bury(self, group: Cgroup) -> None:
        """Remove ``group`` soon, from the keeper thread (its processes are dead or dying);
        now, if the pool is closed."""
        with self.lock:
            later = not self.closed
            if later:
                self.graves.append(group)
        if later:
            self.wake.set()
        else:
            group.remove()

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


_pool: WarmPool | None = None
_pool_lock = threading.Lock()
_warm_failure: str | None = None


def warm_pool() -> WarmPool | None:
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
            pool = WarmPool()
            _warm_failure = _probe(pool)
            if _warm_failure is None:
                _pool = pool
                atexit.register(pool.close)
                return pool
            pool.close()
        log.warning("warm sandboxes are not available here (%s); every program starts a fresh "
                    "(cold) sandbox, with the same isolation", _warm_failure)
        return None


def _probe(pool: WarmPool) -> str | None:
    """None if a warm sandbox runs a program correctly, else why not."""
    box = pool.acquire(SandboxLimits())
    if box is None:
        zygote = pool.zygote
        return (pool.failure or pool.last_error or (zygote.stderr() if zygote else "")
                or "no sandbox started in time")
    box.set_limits(SandboxLimits(wall_seconds=30))
    result = box.run("def solve(item, solver):\n    return solver.ask('ready?')\n",
                     {"id": "probe", "question": "?", "letters": ["A"], "choices": ["a"]},
                     handle_call=lambda call: {"value": "yes"})
    if (result.status, result.answer) != ("ok", "yes"):
        return (f"a probe program ended as {result.status}: {result.message} "
                f"{result.stderr or ''}").strip()
    return None


class WarmSandbox(Sandbox):
    """Every program in a sandbox the pool started ahead of time (same isolation as cold)."""

    name = "warm"

    def isolation_level(self) -> str:
        return isolation_level()

    def start(self, limits: SandboxLimits) -> WarmBox:
        """A started sandbox set to ``limits``. Raises ``SandboxUnavailable`` when warm
        sandboxes do not work here (warned once), ``SandboxStartError`` when none started."""
        pool = warm_pool()
        if pool is None:
            raise SandboxUnavailable(f"warm sandboxes are not available here ({_warm_failure})")
        box = pool.acquire(limits)
        if box is None:
            raise SandboxStartError(pool.last_error or "none could be started in time")
        return box
