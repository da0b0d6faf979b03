"""Cold starts: a fresh sandbox started for its program: a start gate (``sh``, held until the
program's fresh cgroup holds it), setpriv, bwrap, then a fresh interpreter (about 60 ms).
At level ``process`` (asked for explicitly) the same without bwrap."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

from .bwrap import ENV, NOBODY, as_root, bwrap_command, drop_privileges, worker_args
from .cgroups import Cgroup, new_cgroup
from .execute import close_pipes, execute
from .interface import (
    HandleCall,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    SandboxStartError,
    StartedSandbox,
)
from .isolation import warn_weak_isolation

__all__ = ["ColdBox", "ColdSandbox"]

log = logging.getLogger(__name__)


def _command(level: str, read_fd: int, write_fd: int, limits: SandboxLimits
             ) -> tuple[list[str], str | None]:
    """The command (behind a start gate) and, for ``process``, its private working folder."""
    gate = ["/bin/sh", "-c", 'read -r _ && exec "$@" </dev/null', "cgr-sandbox"]
    worker = worker_args(read_fd, write_fd)
    if level.startswith("bwrap"):
        return [*gate, *bwrap_command(worker, limits)], None
    warn_weak_isolation()
    workdir = tempfile.mkdtemp(prefix="cgr-program-")
    if as_root():
        os.chown(workdir, NOBODY, NOBODY)
        if shutil.which("setpriv"):
            worker = [*drop_privileges(), *worker]
    return [*gate, *worker], workdir


class ColdBox(StartedSandbox):
    """A fresh sandbox for one program: sh (start gate) -> [setpriv -> bwrap ->] python,
    in ``group`` (if any) from its first instruction."""

    kind = "cold"

    def __init__(self, level: str, limits: SandboxLimits, group: Cgroup | None) -> None:
        self.isolation, self.limits, self.group = level, limits, group
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        self.workdir: str | None = None
        try:
            command, self.workdir = _command(level, to_worker_r, from_worker_w, limits)
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(to_worker_r, from_worker_w),
                env={**ENV, "HOME": self.workdir or "/"}, cwd=self.workdir or "/",
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

    def place(self) -> None:
        """Put the gate in the group: it holds the command until the cgroup holds it."""
        if self.group is not None:
            self.group.add(self.proc.pid)

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def run(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
            seed: int = 0) -> SandboxResult:
        return execute(self, program, item, handle_call, seed)

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def server_died(self) -> bool:
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.group is not None:
            self.group.kill()  # what left the session is still in the group

    def reap(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def close(self) -> None:
        close_pipes(self)
        for stream in (self.stdout, self.stderr, self.proc.stdin):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def drop_group(self) -> None:
        if self.group is not None:
            self.group.remove()  # kills whatever is left until it can go
            self.group = None

    def kill(self) -> None:
        self.stop()
        self.reap()
        self.close()
        self.drop_group()


class ColdSandbox(Sandbox):
    """Every program in a sandbox started for it, at ``level`` (``bwrap+cgroup``, ``bwrap``
    or ``process``); a program whose cgroup cannot be made runs at ``bwrap``, with a warning."""

    name = "cold"

    def __init__(self, level: str) -> None:
        self.level = level

    def isolation_level(self) -> str:
        return self.level

    def start(self, limits: SandboxLimits) -> ColdBox:
        level, group = self.level, None
        try:
            if level == "bwrap+cgroup":
                group, level = self._group(limits)
            box = ColdBox(level, limits, group)
        except Exception as err:  # nothing started: the caller records why
            if group is not None:
                group.remove()
            raise SandboxStartError(f"cannot start the sandbox: {type(err).__name__}: {err}"
                                    ) from err
        try:
            box.place()
        except OSError as err:
            log.warning("cgroup limits unavailable for this program: %s", err)
            box.drop_group()
            box.isolation = "bwrap"
        return box

    @staticmethod
    def _group(limits: SandboxLimits) -> tuple[Cgroup | None, str]:
        try:
            return new_cgroup(limits), "bwrap+cgroup"
        except OSError as err:
            log.warning("cgroup limits unavailable for this program: %s", err)
            return None, "bwrap"
