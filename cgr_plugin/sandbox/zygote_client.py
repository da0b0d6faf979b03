"""The client of the warm sandbox server (the zygote, ``_zygote.py``): a Python that has
imported the worker, started by exec (never by forking this process) inside the same bwrap
command as a cold sandbox, as ``nobody`` with no capabilities, dying with this process
(``--die-with-parent``, and when its socket closes). The zygote never sees a program or an
item: it forks sandboxes, and programs go from here to each sandbox's worker over its own
pipes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from .bwrap import ENV, WORKER, bwrap_command, python
from .interface import SandboxLimits

__all__ = ["ZYGOTE", "SpawnError", "Zygote"]

ZYGOTE = Path(__file__).with_name("_zygote.py")


class SpawnError(OSError):
    """A warm sandbox could not be started (no program ran in it)."""


class Zygote:
    """The fork server: a bubblewrap sandbox (nobody, no capabilities) whose Python waits for
    requests on a SOCK_SEQPACKET socket. Started by exec, like every sandbox."""

    def __init__(self) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.errors = tempfile.TemporaryFile()
        self.send_lock = threading.Lock()
        source = WORKER.read_text(encoding="utf-8") + "\n" + ZYGOTE.read_text(encoding="utf-8")
        command = bwrap_command([python(), "-I", "-S", "-c", source, "--zygote",
                                 str(child.fileno())], SandboxLimits(), warm=True)
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.errors,
                                         pass_fds=(child.fileno(),), env=ENV, cwd="/",
                                         start_new_session=True)
        except OSError:
            self.sock.close()
            self.errors.close()
            raise
        finally:
            child.close()
        try:
            self.sock.settimeout(60)
            said = self.sock.recv(16)
        except OSError as err:
            said = f"{type(err).__name__}: {err}".encode()
        if said != b"ready":
            detail = self.stderr() or said.decode(errors="replace") or "no answer"
            self.close()
            raise SpawnError(f"the sandbox server did not start: {detail}")
        self.sock.settimeout(10)  # a send that blocks this long means the server is stuck

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.errors.seek(0)
            return self.errors.read()[-2000:].decode(errors="replace").strip()
        return ""

    def request(self, tmp_bytes: int, fds: list[int]) -> None:
        with self.send_lock:
            socket.send_fds(self.sock, [json.dumps({"tmp": tmp_bytes}).encode()], fds)

    def close(self) -> None:
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.close()  # the server exits when its socket closes
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.errors.close()
