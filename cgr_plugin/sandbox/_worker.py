"""Runs one generated program inside the sandbox. Standard library only; runs with ``python -I -S``.

Protocol: JSON lines over two inherited pipes (argv: read fd, write fd), never over stdout,
which belongs to the program. The parent sends ``init`` (program, item without its gold, limits,
seed); the worker answers with ``call`` messages (each with an ``id``, waits for the ``reply`` with
the same ``id``: a reply left unread by an interrupted call is skipped, never taken for the
next call's) and ends with one ``result`` or ``error``. Everything the program prints is
captured, truncated, and returned. The parent decides syntax errors, a missing entry point and
the budget itself; from here it takes only what a run can produce.

Before the program runs, the worker installs a seccomp deny-list (``_seccomp``) that it and
every process it starts keep: no new namespaces (user namespaces above all), io_uring,
userfaultfd, bpf, kernel keys, perf events, ptrace, mounts, prlimit on other processes, file
locks, leases, inotify, dnotify and mincore (covert channels between concurrent programs
through the files they share), sockets other than unix/IPv4/IPv6.
Only x86_64 has the table; elsewhere, and for any other ABI (x32, i386), it fails closed.

The function that runs must be the audited one: the code object compiled from the module's
top-level ``def solve`` at the line the parent names (``entry_line``), not rebound, wrapped,
decorated or given other code; anything else is ``entry_mismatch`` and does not run.

A cold sandbox runs this file as ``-c`` text; a warm one forks it from ``_zygote.py``
(appended to this text), which calls ``_serve`` in the forked worker.
"""

import ctypes
import errno
import faulthandler
import io
import json
import linecache
import os
import random
import resource
import signal
import struct
import sys
import threading
import traceback
import types

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
        self._calls = 0

    def _call(self, kind, **fields):
        with self._lock:
            self._calls += 1
            number = self._calls
            _send({"type": "call", "id": number, "kind": kind, **fields})
            reply = _receive()
            while reply.get("id") != number:  # the reply of a call a signal interrupted
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


_AUDIT_ARCH_X86_64 = 0xC000003E
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_NEW_NAMESPACES = 0x7E020000  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_DENIED = {  # x86_64 numbers of syscalls no program needs -> errno
    272: errno.EPERM, 308: errno.EPERM,  # unshare, setns
    435: errno.ENOSYS,  # clone3 (its flags sit in memory; glibc falls back to clone)
    425: errno.EPERM, 426: errno.EPERM, 427: errno.EPERM,  # io_uring_setup, _enter, _register
    323: errno.EPERM, 321: errno.EPERM,  # userfaultfd, bpf
    248: errno.EPERM, 249: errno.EPERM, 250: errno.EPERM,  # add_key, request_key, keyctl
    298: errno.EPERM, 101: errno.EPERM,  # perf_event_open, ptrace
    310: errno.EPERM, 311: errno.EPERM, 312: errno.EPERM,  # process_vm_readv/_writev, kcmp
    438: errno.EPERM, 440: errno.EPERM,  # pidfd_getfd, process_madvise
    165: errno.EPERM, 166: errno.EPERM, 155: errno.EPERM, 161: errno.EPERM,  # mount, umount2,
    428: errno.EPERM, 429: errno.EPERM, 430: errno.EPERM, 431: errno.EPERM,  # pivot_root,
    432: errno.EPERM, 433: errno.EPERM, 442: errno.EPERM,  # chroot, the new mount API
    73: errno.EPERM,  # flock
    253: errno.EPERM, 294: errno.EPERM, 27: errno.EPERM,  # inotify_init/_init1, mincore: they
    # would show one program what another touches in the files all programs share (/usr)
    246: errno.EPERM, 320: errno.EPERM, 175: errno.EPERM, 313: errno.EPERM,  # kexec, modules
    176: errno.EPERM, 169: errno.EPERM, 167: errno.EPERM, 168: errno.EPERM,  # reboot, swap
    163: errno.EPERM, 179: errno.EPERM, 172: errno.EPERM, 173: errno.EPERM,  # acct, quotactl,
    303: errno.EPERM, 304: errno.EPERM, 300: errno.EPERM,  # io ports, file handles, fanotify
}
_CLONE, _SOCKET, _SOCKETPAIR, _PRLIMIT64, _FCNTL = 56, 41, 53, 302, 72
_SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
_LOCK_COMMANDS = (5, 6, 7, 36, 37, 38,  # F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK/SETLK/SETLKW
                  1024, 1026)  # F_SETLEASE, F_NOTIFY


def _op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


def _on_arg(number, arg, tests, otherwise):
    """Syscall ``number``: each (opcode, value, verdict) test on the low half of ``arg``, in
    order; the first that holds gives its verdict, else ``otherwise``."""
    body = [_op(_LD_ABS, 16 + 8 * arg)]
    for code, value, verdict in tests:
        body += [_op(code, value, 0, 1), _op(_RET, verdict)]
    body.append(_op(_RET, otherwise))
    return [_op(_JEQ, number, 0, len(body)), *body]


_FILTER = []  # the built filter (a warm zygote builds it before forking), then "installed"


def _seccomp_filter():
    """The deny-list as a classic BPF program (bytes, instruction count)."""
    if _FILTER:
        return _FILTER[0]
    deny = 0x00050000  # SECCOMP_RET_ERRNO
    ops = [_op(_LD_ABS, 4), _op(_JEQ, _AUDIT_ARCH_X86_64, 1, 0), _op(_RET, _KILL),
           _op(_LD_ABS, 0), _op(_JGE, 0x40000000, 0, 1), _op(_RET, _KILL)]  # no x32 ABI
    for number, code in _DENIED.items():
        ops += [_op(_JEQ, number, 0, 1), _op(_RET, deny | code)]
    ops += _on_arg(_CLONE, 0, [(_JSET, _NEW_NAMESPACES, deny | errno.EPERM)], _ALLOW)
    for number in (_SOCKET, _SOCKETPAIR):
        ops += _on_arg(number, 0, [(_JEQ, family, _ALLOW) for family in _SOCKET_FAMILIES],
                       deny | errno.EAFNOSUPPORT)
    ops += _on_arg(_PRLIMIT64, 0, [(_JEQ, 0, _ALLOW)], deny | errno.EPERM)  # itself only
    ops += _on_arg(_FCNTL, 1, [(_JEQ, cmd, deny | errno.EPERM) for cmd in _LOCK_COMMANDS],
                   _ALLOW)
    ops.append(_op(_RET, _ALLOW))
    _FILTER.append((b"".join(ops), len(ops)))
    return _FILTER[0]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp():
    """Install the deny-list for this process and all it starts, once; OSError where it
    cannot. (A warm worker installs it before it waits for its program: off the clock.)"""
    if _FILTER[1:]:
        return  # installed already
    if os.uname().machine != "x86_64":
        raise OSError(errno.ENOSYS, "the seccomp deny-list is for x86_64 only")
    code, count = _seccomp_filter()
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _Program(count, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    zero = ctypes.c_ulong(0)
    for option, arg in ((38, ctypes.c_ulong(1)), (22, ctypes.byref(program))):
        # PR_SET_NO_NEW_PRIVS, 1; PR_SET_SECCOMP, SECCOMP_MODE_FILTER (2), &program
        first = ctypes.c_ulong(1) if option == 38 else ctypes.c_ulong(2)
        second = zero if option == 38 else arg
        if libc.prctl(option, first, second, zero, zero) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"seccomp: {os.strerror(number)}")
    _FILTER.append("installed")


def _traceback(err):
    """The program's part of the traceback (not this file's frame that called it), capped."""
    tb = err.__traceback__.tb_next if err.__traceback__ is not None else None
    text = "".join(traceback.format_exception(type(err), err, tb))
    return text if len(text) <= 4000 else "[...]\n" + text[-3990:]


def _entry_code(code, line):
    """The code object of the module's top-level ``def solve`` at ``line``, or None."""
    found = [const for const in code.co_consts if isinstance(const, types.CodeType)
             and const.co_name == "solve" and const.co_firstlineno == line]
    return found[0] if len(found) == 1 else None


def _audited(solve, entry):
    return (entry is not None and type(solve) is types.FunctionType
            and solve.__code__ is entry and solve.__name__ == "solve")


def _encodable(answer):
    """``answer`` if JSON can carry it, else its repr (capped), else a description."""
    try:
        json.dumps(answer)
        return answer
    except BaseException:  # TypeError, ValueError, RecursionError, digits limits, ...
        pass
    try:
        return repr(answer)[:200]
    except BaseException:
        return f"<unencodable {type(answer).__name__}>"


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
    source = init["program"]
    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as err:
        # the parent's Python compiled it (it decides syntax errors); this one cannot
        _send({"type": "error", "status": "runtime_error", "message": f"the sandbox's Python "
               f"cannot compile the program: {type(err).__name__}: {err}"[:2000], "output": ""})
        return
    entry = _entry_code(code, init.get("entry_line"))
    try:
        _seccomp()
    except OSError as err:  # fail closed: no program runs without the filter
        sys.__stderr__.write(f"cgr sandbox: {err}\n")
        os._exit(70)
    try:
        linecache.cache["program.py"] = (len(source), None, source.splitlines(True), "program.py")
        exec(code, namespace)  # noqa: S102 - this is the sandbox
        solve = namespace.get("solve")
        if not _audited(solve, entry):
            _send({"type": "error", "status": "entry_mismatch", "message": "solve is not the "
                   "program's top-level def solve (rebound, wrapped, decorated or altered)",
                   "output": captured.getvalue()})
            return
        answer = solve(item, solver)
    except CpuTimeExceeded as err:
        _send({"type": "error", "status": "timeout", "message": str(err),
               "output": captured.getvalue()})
        return
    except MemoryError:
        _send({"type": "error", "status": "memory_limit", "message": "MemoryError",
               "output": captured.getvalue()})
        return
    except BaseException as err:  # the program's failure, whatever it was
        _send({"type": "error", "status": "runtime_error",
               "message": f"{type(err).__name__}: {err}"[:2000], "traceback": _traceback(err),
               "output": captured.getvalue()})
        return
    _send({"type": "result", "answer": _encodable(answer), "output": captured.getvalue()})


def _serve(read_fd, write_fd):
    _open(read_fd, write_fd)
    main()
    _out.flush()
    os._exit(0)


if __name__ == "__main__" and sys.argv[1:2] != ["--zygote"]:
    _serve(int(sys.argv[1]), int(sys.argv[2]))
