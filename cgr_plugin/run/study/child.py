"""One step of a study as a child process that cannot outlive the study.

Each child is a fresh Python (the study's own interpreter, so the same cgr-plugin) in a session
of its own, so Ctrl-C reaches only the study, which then stops the child's whole process group.
Before it imports anything the child asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``), and exits if the parent is already gone, so a study killed with
``kill -9`` leaves no cgr-eval running. Its stderr (lm-eval's log and cgr's progress bars)
passes through to the study's stderr and into ``stderr.log``; its stdout (lm-eval's results
table) goes to ``stdout.log``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["ChildResult", "Step", "read_counters", "stderr_tail"]

# Runs in the child: die with the parent (Linux), then the command. argv[1] is the parent's pid.
_PRELUDE = """\
import os, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("cgr study: the study ended before this step started")
"""
CGR_EVAL = _PRELUDE + "from cgr_plugin.cli import cgr_eval_main\ncgr_eval_main(sys.argv[2:])\n"
CGR = _PRELUDE + "from cgr_plugin.cli import cgr_main\ncgr_main(sys.argv[2:])\n"

_JOURNAL = re.compile(r"cgr: (\d+) of (\d+) items taken from the journal")
_CACHE = re.compile(r"cgr: response cache \(.*?\), [a-z ]+: (\d+) hits, (\d+) misses")
_BAR = re.compile(r"(it|item)/s\]|\?(it|item)/s|^\s*\d+%\|")


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    interrupted: bool = False


def _pump(source: IO[bytes], sinks: Sequence[Any]) -> None:
    """Copy a pipe to every sink as bytes arrive (progress bars redraw with \\r, not lines)."""
    while chunk := os.read(source.fileno(), 65536):
        for sink in sinks:
            sink.write(chunk)
            sink.flush()


class Step:
    """A child command run to its end (or until the study is interrupted)."""

    def __init__(self, code: str, argv: Sequence[str], *, cwd: Path, logs: Path,
                 echo: bool = True) -> None:
        self.code, self.argv, self.cwd, self.logs, self.echo = code, list(argv), cwd, logs, echo
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._stdout = open(self.logs / "stdout.log", "wb")  # noqa: SIM115 - closed in wait()
        self._stderr = open(self.logs / "stderr.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.code, str(os.getpid()), *self.argv], cwd=self.cwd,
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=subprocess.PIPE,
            start_new_session=True)
        sinks = [self._stderr, *([sys.stderr.buffer] if self.echo else [])]
        self._pumping = threading.Thread(target=_pump, args=(self.process.stderr, sinks),
                                         daemon=True)
        self._pumping.start()

    def wait(self) -> ChildResult:
        """The exit status; on Ctrl-C the child's process group is stopped (TERM, then KILL
        after 10 s) and the result says it was interrupted."""
        assert self.process is not None
        interrupted = False
        try:
            code = self.process.wait()
        except KeyboardInterrupt:
            interrupted = True
            code = self.stop()
        self._pumping.join(timeout=10)
        self._stdout.close()
        self._stderr.close()
        return ChildResult(exit_code=code, interrupted=interrupted)

    def stop(self) -> int:
        assert self.process is not None
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                return self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        return self.process.wait()

    def run(self) -> ChildResult:
        self.start()
        return self.wait()


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def read_counters(logs: Path) -> dict[str, int]:
    """What cgr-eval's log says it reused: items from the journal, response-cache hits and
    misses (summed over its models)."""
    text = _text(logs / "stderr.log")
    journal = [(int(a), int(b)) for a, b in _JOURNAL.findall(text)]
    cache = [(int(a), int(b)) for a, b in _CACHE.findall(text)]
    return {"journal_hits": sum(a for a, _ in journal),
            "cache_hits": sum(a for a, _ in cache), "cache_misses": sum(b for _, b in cache)}


def stderr_tail(logs: Path, lines: int = 15) -> str:
    """The last lines of a step's stderr, without its progress-bar redraws."""
    kept = [line.rstrip() for line in re.split(r"[\r\n]", _text(logs / "stderr.log"))
            if line.strip() and not _BAR.search(line)]
    return "\n".join(kept[-lines:])
