"""What isolation this host can give a program, found once by starting the real sandbox.

Levels, best first (recorded in every record):

- ``bwrap+cgroup``: bubblewrap namespaces (user, PID, mount, network, IPC, UTS, cgroup), all
  capabilities dropped, a read-only root (``/proc/sys`` and ``/dev`` too) with a private
  size-capped /tmp, no home, no project files, an empty environment, rlimits, plus a cgroup of
  its own capping the processes and memory of the whole program;
- ``bwrap``: the same without the cgroup (rlimits only), with a warning saying why;
- ``process``: no usable bubblewrap. Programs then run only where weak isolation was asked
  for (the ``process`` sandbox, ``sandbox=process``, or ``CGR_SANDBOX=process``): a plain
  child process with an empty environment, a private working folder and rlimits, which does
  NOT stop network access or file writes. Without that opt-in they do not run at all: each is
  recorded with a message saying how to install bubblewrap or opt in.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from functools import lru_cache

from .bwrap import as_root, bwrap_command, worker_args
from .cgroups import cgroup_problem
from .interface import SandboxLimits, SandboxUnavailable

__all__ = ["WEAK_ENV", "bwrap_problem", "isolation_level", "unavailable", "warn_weak_isolation",
           "weak_isolation_allowed"]

log = logging.getLogger(__name__)
WEAK_ENV = "CGR_SANDBOX"  # "process": run programs without bubblewrap where it is unusable
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


@lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when the real sandbox command starts here (a worker that only says hello), else
    why it does not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if as_root() and shutil.which("setpriv") is None:
        return "setpriv (util-linux), needed to run programs as nobody, is not installed"
    read_fd, write_fd = os.pipe()
    try:
        command = bwrap_command(worker_args(read_fd, write_fd,
                                            "import os, sys; os.write(int(sys.argv[2]), b'ok')"),
                                SandboxLimits())
        probe = subprocess.run(command, capture_output=True, timeout=60,
                               pass_fds=(read_fd, write_fd), env={"PATH": "/usr/bin:/bin"})
        os.close(write_fd)
        write_fd = -1
        said = os.read(read_fd, 16)
    except (OSError, subprocess.SubprocessError) as err:
        return f"bubblewrap cannot start a sandbox here: {err}"
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    if probe.returncode != 0 or said != b"ok":
        detail = probe.stderr.decode(errors="replace").strip() or f"exit {probe.returncode}"
        return f"bubblewrap is installed but cannot start a sandbox here: {detail}"
    return None


def isolation_level() -> str:
    """The best isolation this host gives: ``bwrap+cgroup``, ``bwrap`` or ``process`` (no
    usable bubblewrap: programs run only with the weak-isolation opt-in)."""
    if bwrap_problem() is not None:
        return "process"
    problem = cgroup_problem()
    if problem is None:
        return "bwrap+cgroup"
    _warn_once("cgroup", "cgroup limits are not available here (%s): programs get rlimits only "
               "(isolation 'bwrap'), which a process flood can strain", problem)
    return "bwrap"


def weak_isolation_allowed() -> bool:
    """Whether ``CGR_SANDBOX=process`` lets programs run without bubblewrap here."""
    return os.environ.get(WEAK_ENV, "").strip().lower() == "process"


def unavailable() -> SandboxUnavailable:
    """The error of a host without usable bubblewrap, saying how to get going (logged once:
    every program of the run gets it)."""
    error = SandboxUnavailable(
        f"no sandbox: {bwrap_problem()}. Generated programs are not run without one. Install "
        "bubblewrap (apt-get install bubblewrap; scripts/setup.sh does it), or accept weak "
        "isolation (a plain child process that CAN reach the network and write files) with "
        f"--model_args sandbox=process or {WEAK_ENV}=process")
    _warn_once("unavailable", "%s", error)
    return error


def warn_weak_isolation() -> None:
    _warn_once("weak", "!!! generated programs run in plain child processes (isolation "
               "'process', as asked for): they CAN reach the network, write files and read "
               "what their user can read. bubblewrap (bwrap) gives real isolation: %s !!!",
               bwrap_problem() or "it works here; use sandbox=bwrap (the default)")
