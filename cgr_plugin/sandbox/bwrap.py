"""The sandbox's command line: bubblewrap's namespaces and mounts around the worker's Python.

When cgr runs as root the sandbox runs as ``nobody`` (setpriv) on the system's
``/usr/bin/python3``: root inside a namespace could still write ``/proc/sys`` and other
root-only files. The program's Python has no site-packages: standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from .interface import SandboxLimits

__all__ = ["ENV", "NOBODY", "WORKER", "as_root", "bwrap_command", "drop_privileges", "python",
           "worker_args"]

WORKER = Path(__file__).with_name("_worker.py")
NOBODY = 65534
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/", "PYTHONHASHSEED": "0"}


def as_root() -> bool:
    return os.geteuid() == 0


def python() -> str:
    """The sandbox's interpreter: one the unprivileged sandbox user can read."""
    if as_root() and os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return os.path.realpath(sys.executable)  # a venv's python resolves to its base interpreter


def drop_privileges() -> list[str]:
    if not as_root():
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def worker_args(read_fd: int, write_fd: int, source: str | None = None) -> list[str]:
    # The worker travels as -c text: nothing of this package needs to be readable by `nobody`.
    source = source if source is not None else WORKER.read_text(encoding="utf-8")
    return [python(), "-I", "-S", "-c", source, str(read_fd), str(write_fd)]


@lru_cache(maxsize=1)
def disables_userns() -> bool:
    """Whether this bubblewrap has ``--disable-userns`` (0.8.0 and later)."""
    try:
        shown = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in shown.stdout + shown.stderr


def bwrap_command(worker: list[str], limits: SandboxLimits, *, warm: bool = False
                  ) -> list[str]:
    """The sandbox command. ``warm``: the zygote's, which leaves /proc fully visible (no
    read-only /proc/sys over it: a nested user namespace may only mount a fresh /proc where one
    is) and /tmp an empty read-only folder; each forked sandbox mounts both for itself (and
    creates its own user namespace, so only a cold sandbox gets ``--disable-userns``).
    The host's boot arguments (/proc/cmdline) are hidden."""
    cmd = [*drop_privileges(), "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/usr/{link}").is_dir():
            cmd += ["--symlink", f"usr/{link}", f"/{link}"]
    if warm:
        cmd += ["--proc", "/proc", "--dev", "/dev", "--dir", "/tmp"]
    else:  # no user namespace inside the sandbox (the worker's seccomp filter denies it too)
        if disables_userns():
            at = cmd.index("--unshare-all") + 1
            cmd[at:at] = ["--unshare-user", "--disable-userns"]
        cmd += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
                "--ro-bind", "/dev/null", "/proc/cmdline", "--dev", "/dev",
                "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    root = Path(worker[0]).resolve().parent.parent
    if not str(root).startswith("/usr"):
        cmd += ["--ro-bind", str(root), str(root)]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            "--chdir", "/tmp", *worker]
    return cmd
