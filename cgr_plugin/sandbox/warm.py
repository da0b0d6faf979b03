"""Warm starts: one sandbox forked ahead of time by the zygote, waiting for its program.

Per sandbox the zygote forks S, which the parent puts in a fresh cgroup before S creates
anything; S unshares new user, mount, PID, network, IPC, UTS and cgroup namespaces and forks
I, PID 1 of the new PID namespace, which mounts a fresh /proc (showing only the program's own
processes) with /proc/sys read-only, a private size-capped /tmp and a fresh /dev/pts, brings
loopback up, drops every capability (no_new_privs set, bounding and ambient sets cleared) and
forks W, the worker. So each program still gets, per program: uid ``nobody`` without
capabilities; no network (a network namespace of its own, loopback only); its own PID
namespace (it cannot see or signal its siblings, the zygote or this process); its own /tmp; a
read-only root, /proc/sys and /dev; the same empty environment; the same rlimits (set by the
same worker code); and its own cgroup, entered before any program code runs, killed and
removed when the program ends. What differs from a cold start: programs share the zygote's
read-only memory (copy-on-write; pages the zygote touched are charged to this process's
cgroup, not the program's, so the memory cap counts the interpreter's shared pages once
instead of per program), and modules the worker needs are already imported.

When the program ends, I and W are killed and ``run`` returns only when nothing the program
ran is left: W has exited and the cgroup holds nothing but S and I (ours), or else I has
exited, which as PID 1 it does only after everything in its PID namespace is dead; the emptied
cgroup is removed moments later (``bury``), when S has torn the namespaces down and gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from .cgroups import Cgroup, new_cgroup
from .execute import close_pipes, execute
from .interface import HandleCall, SandboxLimits, SandboxResult, StartedSandbox
from .zygote_client import SpawnError, Zygote

__all__ = ["WARM_ENV", "WarmBox", "exited", "warm_wanted"]

WARM_ENV = "CGR_SANDBOX_WARM"
_CREDENTIALS = struct.calcsize("iII")  # struct ucred: pid, uid, gid


def warm_wanted() -> bool:
    return os.environ.get(WARM_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def exited(pidfds: list[int], timeout: float) -> list[int]:
    """Those of ``pidfds`` whose process has exited, waiting up to ``timeout`` for one."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(timeout, 0) * 1000)]


class WarmBox(StartedSandbox):
    """One started warm sandbox: S (outside), I (PID 1) and W (the worker, waiting for
    ``init``), as described in ``_zygote.py``; the parent holds the other pipe ends. With
    ``cgroups``, S enters a cgroup of its own before it creates anything, so I and W are born
    in it. ``bury`` removes an ended program's cgroup (soon: S leaves it moments later)."""

    kind = "warm"

    def __init__(self, zygote: Zygote, limits: SandboxLimits, cgroups: bool,
                 bury: Callable[[Cgroup], None]) -> None:
        self.zygote, self.limits, self.bury = zygote, limits, bury
        self.tmp_bytes = limits.tmp_bytes
        self.group: Cgroup | None = None
        self.isolation = "bwrap+cgroup" if cgroups else "bwrap"
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
                self.group = new_cgroup(limits)
            deadline = time.monotonic() + 30
            for part in "CGW":
                kind, text, pid = self._receive(deadline)
                if kind != part or pid is None:
                    raise SpawnError(text or f"the warm sandbox ended before {part!r}")
                self.pids[part] = pid
                try:
                    self.pidfds[part] = os.pidfd_open(pid)
                    if part == "C":  # S waits for this answer before it forks
                        if self.group is not None:
                            self.group.add(pid)
                        self.ctl.send(b"go")
                except OSError as err:  # S gone already? It may have said why
                    kind, text, _ = self._receive(time.monotonic() + 1)
                    raise SpawnError(text if kind == "E" else str(err)) from err
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
        return len(self.pidfds) == 3 and not exited(list(self.pidfds.values()), 0)

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

    def run(self, program: str, item: Mapping[str, Any], *, handle_call: HandleCall,
            seed: int = 0) -> SandboxResult:
        return execute(self, program, item, handle_call, seed)

    def set_limits(self, limits: SandboxLimits) -> None:
        """Take ``limits`` for the program (the /tmp size stays the one it was started with)."""
        if self.group is not None:
            self.group.set_limits(limits)
        self.limits = limits

    def server_died(self) -> bool:
        return not self.zygote.alive()

    def stop(self, parts: str = "GW") -> None:
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
        exited([self.pidfds["W"]], 5)
        ours = {self.pids["C"], self.pids["G"]}
        if self.group is None or not set(self.group.members()) <= ours:
            exited([self.pidfds["G"]], 5)

    def drop_group(self) -> None:
        """Nothing of the program is left in its group; S may be, briefly."""
        if self.group is not None:
            self.bury(self.group)
            self.group = None

    def discard(self) -> None:
        """Kill a sandbox no program will use; its cgroup goes when S has exited."""
        self.stop("CGW")
        self.close()
        self.drop_group()

    def kill(self) -> None:
        self.discard()

    def close(self) -> None:
        close_pipes(self)
        for stream in (self.stdout, self.stderr, self.ctl):
            with contextlib.suppress(OSError):
                stream.close()
        for pidfd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(pidfd)
        self.pidfds = {}
