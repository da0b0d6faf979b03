"""Runs one generated program inside the sandbox. Standard library only; runs with ``python -I -S``.

Protocol: JSON lines over two inherited pipes (argv: read fd, write fd), never over stdout,
which belongs to the program. The parent sends ``init`` (program, item without its gold, limits,
seed); the worker answers with ``call`` messages (each waits for a ``reply``) and ends with one
``result`` or ``error``. Everything the program prints is captured, truncated, and returned.

A cold sandbox runs this file as ``-c`` text; a warm one forks it from ``_zygote.py``
(appended to this text), which calls ``_serve`` in the forked worker.
"""

import faulthandler
import io
import json
import linecache
import os
import random
import resource
import signal
import sys
import threading
import traceback

_in = _out = None


def _open(read_fd, write_fd):
    global _in, _out
    _in = os.fdopen(read_fd, "r", encoding="utf-8", closefd=True)
    _out = os.fdopen(write_fd, "w", encoding="utf-8", closefd=True)


def _send(message):
    _out.write(json.dumps(message) + "\n")
    _out.flush()


def _receive():
    line = _in.readline()
    if not line:
        os._exit(3)  # the parent is gone
    return json.loads(line)


class BudgetExceeded(BaseException):
    """Raised in the program when the parent refuses a solver call; not an Exception on purpose."""


class CpuTimeExceeded(BaseException):
    """SIGXCPU at the soft CPU limit; the hard limit, seconds later, is a SIGKILL."""


def _on_xcpu(signum, frame):
    raise CpuTimeExceeded("CPU time limit reached")


class _Capped(io.TextIOBase):
    def __init__(self, limit):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
        self.size += min(len(text), max(room, 0))
        self.dropped += max(len(text) - max(room, 0), 0)
        return len(text)

    def getvalue(self):
        tail = f"\n[... {self.dropped} characters dropped]" if self.dropped else ""
        return "".join(self.parts) + tail


class Item:
    """What the program may know about the item: everything except the gold answer."""

    def __init__(self, data):
        self.id = data["id"]
        self.question = data["question"]
        self.letters = list(data["letters"])
        self.choices = list(data["choices"])
        self.options = dict(zip(self.letters, self.choices, strict=True))
        self.context = data.get("context")
        self.payload = data.get("payload")
        self.metadata = dict(data.get("metadata") or {})

    def __repr__(self):
        return f"Item({self.id!r}, {len(self.letters)} options)"


class Solver:
    """The program's only way to reach the solver model; every call counts against a budget."""

    def __init__(self, seed):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # one call in flight: replies cannot cross between threads

    def _call(self, kind, **fields):
        with self._lock:
            _send({"type": "call", "kind": kind, **fields})
            reply = _receive()
        if reply.get("error") == "budget_exceeded":
            raise BudgetExceeded("solver-call budget exhausted")
        if reply.get("error"):
            raise RuntimeError(f"solver call failed: {reply['error']}")
        return reply["value"]

    def ask(self, prompt, max_tokens=128):
        """Free-text reply of the solver to ``prompt``."""
        return self._call("ask", prompt=str(prompt), max_tokens=int(max_tokens))

    def choose(self, prompt=None, max_tokens=None):
        """A letter of this item (or None): the solver answers ``prompt`` (default: the direct
        prompt of the item) and the reply goes through the direct channel's extraction."""
        return self._call("choose", prompt=None if prompt is None else str(prompt),
                          max_tokens=max_tokens)

    def judge(self, statement):
        """P(yes) in [0, 1] that ``statement`` is true, scored from the solver's next-token
        probabilities for "Yes" and "No" (no free text is parsed)."""
        return float(self._call("judge", prompt=str(statement)))

    def pick(self, scores):
        """The letter with the highest score; ties broken by a seeded shuffle, never by order."""
        numbers = {k: float(v) for k, v in dict(scores).items() if float(v) == float(v)}
        if not numbers:  # empty, or nothing but NaN
            return None
        best = max(numbers.values())
        tied = sorted(k for k, v in numbers.items() if v == best)
        return self._rng.choice(tied)


def _limit(kind, value, hard=None):
    try:
        resource.setrlimit(kind, (value, value if hard is None else hard))
    except (ValueError, OSError):
        pass


def _traceback(err):
    """The program's part of the traceback (not this file's frame that called it), capped."""
    tb = err.__traceback__.tb_next if err.__traceback__ is not None else None
    text = "".join(traceback.format_exception(type(err), err, tb))
    return text if len(text) <= 4000 else "[...]\n" + text[-3990:]


def main():
    init = _receive()
    limits = init["limits"]
    try:  # a native crash writes the program's Python stack to stderr, which the parent keeps
        faulthandler.enable(file=2, all_threads=True)
    except (OSError, ValueError, RuntimeError):
        pass
    _limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXCPU, _on_xcpu)
    _limit(resource.RLIMIT_CPU, int(limits["cpu_seconds"]), int(limits["cpu_seconds"]) + 2)
    _limit(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    _limit(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    _limit(resource.RLIMIT_NOFILE, 64)
    _limit(resource.RLIMIT_NPROC, int(limits["processes"]))
    captured = _Capped(int(limits["output_chars"]))
    sys.stdout = sys.stderr = captured
    item = Item(init["item"])
    solver = Solver(init["seed"])
    namespace = {"__name__": "cgr_program", "__builtins__": __builtins__}
    try:
        source = init["program"]
        linecache.cache["program.py"] = (len(source), None, source.splitlines(True), "program.py")
        code = compile(source, "program.py", "exec")
        exec(code, namespace)  # noqa: S102 - this is the sandbox
        solve = namespace.get("solve")
        if not callable(solve):
            _send({"type": "error", "status": "missing_entry", "message": "no solve() function",
                   "output": captured.getvalue()})
            return
        answer = solve(item, solver)
    except BudgetExceeded as err:
        _send({"type": "error", "status": "budget_exceeded", "message": str(err),
               "output": captured.getvalue()})
        return
    except CpuTimeExceeded as err:
        _send({"type": "error", "status": "timeout", "message": str(err),
               "output": captured.getvalue()})
        return
    except MemoryError:
        _send({"type": "error", "status": "memory_limit", "message": "MemoryError",
               "output": captured.getvalue()})
        return
    except SyntaxError as err:
        _send({"type": "error", "status": "syntax_error", "message": f"{err.msg} (line "
               f"{err.lineno})", "output": captured.getvalue()})
        return
    except BaseException as err:  # the program's failure, whatever it was
        _send({"type": "error", "status": "runtime_error",
               "message": f"{type(err).__name__}: {err}"[:2000], "traceback": _traceback(err),
               "output": captured.getvalue()})
        return
    try:
        json.dumps(answer)
    except (TypeError, ValueError):
        answer = repr(answer)[:200]
    _send({"type": "result", "answer": answer, "output": captured.getvalue()})


def _serve(read_fd, write_fd):
    _open(read_fd, write_fd)
    main()
    _out.flush()
    os._exit(0)


if __name__ == "__main__" and sys.argv[1:2] != ["--zygote"]:
    _serve(int(sys.argv[1]), int(sys.argv[2]))
