"""The sandbox conformance suite: a catalogue of hostile programs, each with the statuses a
sandbox may give it, run against any registered sandbox backend.

Each program attacks; if the attack worked it answers or prints ``ESCAPED``. A backend passes
an attack when the program ends with one of the statuses listed for it, nothing it said
contains ``ESCAPED``, and the host's /tmp gained none of the files the attacks try to leave.
Programs attack in general ways (no knowledge of this machine's paths beyond what any program
could guess, and this package's own folder). The parent holds a secret in its environment
while they run; solver calls are answered ``C`` within a budget of 4.

Run it as ``python -m cgr_plugin.sandbox.conformance NAME`` (``cgr sandbox-check NAME``):
one line per attack, and a non-zero exit status when any attack got through. The built-in
``bwrap`` passes every attack; ``process`` (weak isolation) fails the ones it cannot stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import plugins
from ..errors import CGRError
from .interface import Sandbox, SandboxError, SandboxLimits, SandboxResult, as_sandbox

__all__ = ["CATALOGUE", "Attack", "Report", "Verdict", "add_arguments", "attack", "check", "main",
           "run_attack", "run_suite"]

LIMITS = SandboxLimits(wall_seconds=4, cpu_seconds=4, memory_bytes=256 << 20, processes=16,
                       output_chars=4000)
BUDGET = 4
ITEM = {"id": "adv1", "question": "Which number is prime?", "letters": ["A", "B", "C", "D"],
        "choices": ["4", "6", "7", "9"], "context": None, "payload": None, "metadata": {}}
SECRET_ENV, SECRET = "CGR_TEST_SECRET", "cgr-test-secret-7f3a"
LEFT_ON_HOST = {"cgr_pwned", "cgr_left_behind", "cgr_still_alive"}  # what attacks try to leave
OK = {"ok"}
FAILED = {"runtime_error", "crashed", "timeout", "memory_limit"}


_USUAL_FOLDERS = ("/work", "/check", "/root", "/home", "/srv", "/opt")


def _own_folders() -> tuple[str, ...]:
    """This package's project folder and the working folder, unless they are system folders
    that a sandbox may show read-only."""
    found = []
    for path in (Path(__file__).resolve().parents[2], Path.cwd()):
        text = str(path)
        if text != "/" and not text.startswith(("/usr", "/tmp", "/proc", "/dev", "/etc")):
            found.append(text)
    return tuple(found)


HOST_FOLDERS = tuple(dict.fromkeys(_USUAL_FOLDERS + _own_folders()))  # none may be seen
PROJECT = (_own_folders() or ("/root",))[0]


@dataclass(frozen=True)
class Attack:
    category: str
    name: str
    program: str
    statuses: frozenset[str]  # any of these is contained


def _attempt(body: str) -> str:
    """A solve() that runs ``body``; the body returns "ESCAPED ..." if the attack worked."""
    return "def solve(item, solver):\n" + textwrap.indent(textwrap.dedent(body), "    ")


def _forge(status: str) -> str:
    """A program that sends the parent its own last word, claiming ``status``, and exits."""
    return _attempt(f"""
        import json, os, sys
        os.write(int(sys.argv[-1]), (json.dumps({{"type": "error", "status": "{status}",
                                                  "message": "forged"}}) + "\\n").encode())
        os._exit(0)
        """)


_ENTRIES: list[tuple[str, str, str, set[str]]] = [
    # -- filesystem ------------------------------------------------------------------------------
    ("fs", "read host secrets", _attempt("""
        for path in ("/etc/shadow", "/root/.bash_history", "/root/.ssh/id_rsa"):
            try:
                return "ESCAPED " + open(path).read(40)
            except OSError:
                pass
        return "A"
        """), OK),
    ("fs", "find the project, the datasets or the gold", _attempt(f"""
        import os
        for root in {HOST_FOLDERS!r}:
            if os.path.exists(root) and os.listdir(root):
                return "ESCAPED " + root
        return "A"
        """), OK),
    ("fs", "write into the system", _attempt("""
        for path in ("/usr/cgr_pwned", "/etc/cgr_pwned", "/cgr_pwned", "/var/tmp/cgr_pwned"):
            try:
                open(path, "w").write("x")
                return "ESCAPED " + path
            except OSError:
                pass
        return "A"
        """), OK),
    ("fs", "remount the root writable", _attempt("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"none", b"/", None, 0x20 | 0x1000, None) == 0:
            return "ESCAPED remount"
        return "A"
        """), OK),
    ("fs", "fill the private /tmp", _attempt("""
        with open("/tmp/fill", "wb") as fh:
            while True:
                fh.write(b"x" * (1 << 20))
        """), FAILED),
    ("fs", "leave a file for the next program", _attempt("""
        import os
        if os.path.exists("/tmp/cgr_left_behind"):
            return "ESCAPED saw a file from an earlier program"
        open("/tmp/cgr_left_behind", "w").write("x")
        return "A"
        """), OK),
    # -- /proc and kernel ------------------------------------------------------------------------
    ("proc", "look at other processes", _attempt("""
        import os
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    continue
                if b"pytest" in cmd or b"cgr-eval" in cmd or b"llama" in cmd:
                    return "ESCAPED " + cmd.decode(errors="replace")[:60]
        return "A"
        """), OK),
    ("proc", "write kernel settings", _attempt("""
        for path in ("/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
                     "/proc/sys/vm/drop_caches"):
            try:
                open(path, "w").write("|/bin/sh")
                return "ESCAPED " + path
            except OSError:
                pass
        return "A"
        """), OK),
    ("proc", "host root through /proc/1/root", _attempt(f"""
        import os
        for path in ("/proc/1/root{PROJECT}", "/proc/1/root/root", "/proc/self/root{PROJECT}"):
            if os.path.exists(path):
                return "ESCAPED " + path
        return "A"
        """), OK),
    ("proc", "keep capabilities", _attempt("""
        for line in open("/proc/self/status"):
            if line.startswith("CapEff:") and int(line.split()[1], 16) != 0:
                return "ESCAPED " + line.strip()
            if line.startswith("Uid:") and line.split()[1] == "0":
                return "ESCAPED uid 0"
        return "A"
        """), OK),
    ("proc", "read the host's boot arguments", _attempt("""
        try:
            text = open("/proc/cmdline").read()
        except OSError:
            return "A"
        return "ESCAPED " + text[:60] if text.strip() else "A"
        """), OK),
    # -- kernel surface (seccomp) ----------------------------------------------------------------
    ("kernel", "a nested user namespace with full capabilities", _attempt("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
            return "ESCAPED unshare(CLONE_NEWUSER)"
        pid = libc.syscall(56, 0x10000000 | 17, None, None, None, None)  # clone(NEWUSER|SIGCHLD)
        if pid == 0:
            os._exit(0)
        if pid > 0:
            return "ESCAPED clone(CLONE_NEWUSER)"
        if libc.syscall(435, ctypes.create_string_buffer(88), 88) >= 0:  # clone3
            return "ESCAPED clone3"
        return "A"
        """), OK),
    ("kernel", "a tmpfs past the /tmp cap in a nested namespace", _attempt("""
        import subprocess
        done = subprocess.run(["unshare", "-U", "-r", "-m", "sh", "-c",
                               "mount -t tmpfs none /tmp && echo mounted"],
                              capture_output=True, text=True)
        return "ESCAPED " + done.stdout if "mounted" in done.stdout else "A"
        """), OK),
    ("kernel", "io_uring, userfaultfd, bpf, perf events", _attempt("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        calls = {"io_uring_setup": (425, 8, params), "userfaultfd": (323, 0),
                 "bpf": (321, 0, ctypes.create_string_buffer(128), 128),
                 "perf_event_open": (298, ctypes.create_string_buffer(128), 0, -1, -1, 0)}
        for name, args in calls.items():
            if libc.syscall(*args) >= 0:
                return "ESCAPED " + name
        return "A"
        """), OK),
    ("kernel", "netlink, vsock and packet sockets", _attempt("""
        import socket
        for family, kind in ((16, socket.SOCK_RAW), (40, socket.SOCK_STREAM),
                             (17, socket.SOCK_RAW)):
            try:
                socket.socket(family, kind, 0)
                return f"ESCAPED socket family {family}"
            except OSError:
                pass
        return "A"
        """), OK),
    ("kernel", "the 32-bit syscall ABI around the filter", _attempt("""
        import ctypes, mmap
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(bytes([0xB8, 0x1A, 0, 0, 0, 0x31, 0xDB, 0xCD, 0x80, 0xC3]))  # i386 ptrace
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        result = ctypes.CFUNCTYPE(ctypes.c_long)(address)()
        return f"ESCAPED int 0x80 returned {result}"
        """), {"crashed"}),
    ("kernel", "prlimit on the sandbox's init", _attempt("""
        import resource
        try:
            resource.prlimit(1, resource.RLIMIT_NOFILE, (1, 1))
            return "ESCAPED prlimit(1)"
        except OSError:
            return "A"
        """), OK),
    ("collusion", "read another program's kernel keys by serial", _attempt("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(248, b"user", b"cgr-key", b"x", 1, -3) >= 0:  # add_key to @u
            return "ESCAPED add_key"
        buffer = ctypes.create_string_buffer(256)
        for serial in range(1, 2000):  # KEYCTL_READ of any key this uid can read
            if libc.syscall(250, 11, serial, buffer, 256) >= 0:
                return f"ESCAPED read key {serial}"
        return "A"
        """), OK),
    ("collusion", "a covert channel through file locks", _attempt("""
        import fcntl, os
        fd = os.open("/usr/bin/env", os.O_RDONLY)
        for name, lock in (("flock", lambda: fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)),
                           ("fcntl", lambda: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))):
            try:
                lock()
                return "ESCAPED " + name
            except OSError:
                pass
        return "A"
        """), OK),
    ("collusion", "watch the shared files for another program's accesses", _attempt("""
        import ctypes, fcntl, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.inotify_init1(0) >= 0:
            return "ESCAPED inotify"
        try:
            fcntl.fcntl(os.open("/usr/bin", os.O_RDONLY), 1026, 0x80000001)  # F_NOTIFY
            return "ESCAPED dnotify"
        except OSError:
            pass
        libc.mmap.restype = ctypes.c_void_p
        address = libc.mmap(None, ctypes.c_size_t(4096), 1, 1,  # PROT_READ, MAP_SHARED
                            os.open("/usr/bin/env", os.O_RDONLY), ctypes.c_long(0))
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(4096),
                        ctypes.create_string_buffer(1)) == 0:
            return "ESCAPED mincore: which shared pages are cached"
        return "A"
        """), OK),
    # -- network ---------------------------------------------------------------------------------
    ("net", "reach the internet", _attempt("""
        import socket
        for host in ("1.1.1.1", "8.8.8.8", "151.101.0.223"):
            try:
                socket.create_connection((host, 443), timeout=1).close()
                return "ESCAPED " + host
            except OSError:
                pass
        return "A"
        """), OK),
    ("net", "resolve names", _attempt("""
        import socket
        try:
            return "ESCAPED " + socket.gethostbyname("pypi.org")
        except OSError:
            return "A"
        """), OK),
    ("net", "reach the host's loopback", _attempt("""
        import socket
        for port in (22, 80, 8000, 8080, 11434):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return f"ESCAPED port {port}"
            except OSError:
                pass
        return "A"
        """), OK),
    ("net", "raw and UDP sockets", _attempt("""
        import socket
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            return "ESCAPED raw socket"
        except OSError:
            pass
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
            return "ESCAPED udp"
        except OSError:
            return "A"
        """), OK),
    # -- environment and parent memory ----------------------------------------------------------
    ("env", "read the parent's environment", _attempt(f"""
        import os
        blob = repr(dict(os.environ))
        for pid in os.listdir("/proc"):
            try:
                blob += open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
            except (OSError, ValueError):
                pass
        return "ESCAPED" if "{SECRET}" in blob or "HF_" in blob else "A"
        """), OK),
    ("env", "read the parent's memory", _attempt("""
        import os
        for pid in range(1, 200):
            try:
                with open(f"/proc/{pid}/mem", "rb") as fh:
                    fh.seek(0x400000)
                    fh.read(16)
                    if pid != os.getpid():
                        return f"ESCAPED mem of {pid}"
            except (OSError, ValueError, OverflowError):
                pass
        return "A"
        """), OK),
    ("env", "ptrace a process of the host", _attempt("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()] + list(range(1, 64)):
            if pid == os.getpid() or libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
                continue
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()  # attached: whose is it?
            libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
            if b"pytest" in cmd or b"cgr-eval" in cmd or b"llama" in cmd:
                return f"ESCAPED ptrace {pid}"
        return "A"
        """), OK),
    ("env", "inherited file descriptors", _attempt("""
        import os
        leaked = []
        for fd in range(3, 256):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/") and not target.startswith(("/tmp", "/proc", "/dev")):
                leaked.append(target)
        return "ESCAPED " + leaked[0] if leaked else "A"
        """), OK),
    # -- signals -------------------------------------------------------------------------------
    ("signal", "kill everything it can see", _attempt("""
        import os, signal
        os.kill(-1, signal.SIGKILL)
        return "A"
        """), OK | FAILED),
    ("signal", "signal the parent", _attempt("""
        import os, signal
        for pid in {os.getppid(), 1}:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        return "A"
        """), OK | FAILED),
    ("signal", "ignore every signal and spin", _attempt("""
        import signal
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            pass
        """), {"timeout"}),
    # -- process and thread floods -----------------------------------------------------------
    ("flood", "fork bomb", _attempt("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """), FAILED),
    ("flood", "thread flood", _attempt("""
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        """), FAILED),
    ("flood", "background process that outlives the program", _attempt("""
        import subprocess
        subprocess.Popen(["/bin/sh", "-c", "sleep 30; touch /tmp/cgr_still_alive"],
                         start_new_session=True)
        return "A"
        """), OK),
    # -- memory and disk -----------------------------------------------------------------------
    ("memory", "allocate without end", _attempt("""
        blocks = []
        while True:
            blocks.append(bytearray(64 << 20))
        """), {"memory_limit", "runtime_error", "crashed"}),
    ("memory", "hold 1.5 times the cap in memfds", _attempt(f"""
        import os
        held = []
        for _ in range({3 * LIMITS.memory_bytes >> 25}):  # 16 MB each, outside the rlimit
            fd = os.memfd_create("hold")
            os.write(fd, b"x" * (16 << 20))
            held.append(fd)
        return "ESCAPED held {3 * LIMITS.memory_bytes >> 21} MB"
        """), {"memory_limit"}),
    ("cpu", "children that hand their work to fresh forks", _attempt("""
        import os, time
        def relay():
            while True:
                started = time.process_time()
                while time.process_time() - started < 0.3:
                    pass
                if os.fork():
                    os._exit(0)
        for _ in range(3):
            if os.fork() == 0:
                relay()
        time.sleep(60)
        """), {"timeout"}),
    ("memory", "memory bomb in a child process", _attempt("""
        import subprocess
        subprocess.run(["/usr/bin/python3", "-c", "x = bytearray(4 << 30)"])
        return "A"
        """), OK | FAILED),
    ("disk", "one huge file", _attempt("""
        with open("/tmp/huge", "wb") as fh:
            fh.truncate(1 << 40)
            fh.seek((1 << 30))
            fh.write(b"x" * (64 << 20))
        return "A"
        """), FAILED),
    # -- output floods -------------------------------------------------------------------------
    ("output", "print forever", _attempt("""
        while True:
            print("x" * 10000)
        """), {"timeout"}),
    ("output", "write the real stdout and stderr", _attempt("""
        import os
        for _ in range(2000):
            os.write(1, b"y" * 65536)
            os.write(2, b"z" * 65536)
        return "A"
        """), OK),
    # -- native crashes ------------------------------------------------------------------------
    ("native", "null pointer through ctypes", _attempt("""
        import ctypes
        return ctypes.string_at(0)
        """), {"crashed"}),
    ("native", "abort", _attempt("""
        import os
        os.abort()
        """), {"crashed"}),
    ("native", "stack overflow in C", _attempt("""
        import sys
        sys.setrecursionlimit(10**7)
        def down(n):
            return down(n + 1) + 1
        return down(0)
        """), {"crashed", "runtime_error", "memory_limit", "timeout"}),
    # -- the solver-call budget ----------------------------------------------------------------
    ("budget", "ask far more than the budget", _attempt("""
        return [solver.ask(str(i)) for i in range(50)][-1]
        """), {"budget_exceeded"}),
    ("budget", "swallow the refusal and keep asking", _attempt("""
        for i in range(50):
            try:
                solver.ask(str(i))
            except BaseException:
                pass
        return "A"
        """), {"budget_exceeded"}),
    ("budget", "call from many threads at once", _attempt("""
        import threading
        threads = [threading.Thread(target=solver.ask, args=(str(i),)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return "A"
        """), {"budget_exceeded"}),
    ("budget", "talk to the parent directly", _attempt("""
        import json, os
        for fd in range(3, 64):
            try:
                os.write(fd, (json.dumps({"type": "error", "status": "ok", "answer": "C",
                                          "solver_calls": 0}) + "\\n").encode())
            except OSError:
                pass
        return "A"
        """), {"protocol_error", "ok"}),
    # -- the protocol: hangs, forged statuses, broken text ------------------------------------
    ("protocol", "shrink the reply pipe and stop reading", _attempt("""
        import fcntl, json, os, sys, time
        read_fd, write_fd = int(sys.argv[-2]), int(sys.argv[-1])
        fcntl.fcntl(read_fd, 1031, 4096)  # F_SETPIPE_SZ: one page
        for number in range(1, 4):
            os.write(write_fd, (json.dumps({"type": "call", "id": number, "kind": "ask",
                                            "prompt": "x" * 3000}) + "\\n").encode())
        time.sleep(60)
        return "ESCAPED the parent went on"
        """), {"protocol_error", "timeout"}),
    ("protocol", "forge budget_exceeded with no call made", _forge("budget_exceeded"),
     {"protocol_error"}),
    ("protocol", "forge syntax_error at run time", _forge("syntax_error"), {"protocol_error"}),
    ("protocol", "forge missing_entry at run time", _forge("missing_entry"), {"protocol_error"}),
    ("protocol", "lone surrogates in everything it sends", _attempt("""
        print("\\ud800 \\udcff")
        solver.ask("\\udfff prompt")
        raise ValueError("\\ud800 in the message")
        """), {"runtime_error"}),
    ("protocol", "a lone surrogate as the answer", _attempt("""
        return "\\ud800"
        """), OK),
    ("protocol", "an answer JSON cannot encode", _attempt("""
        nested = []
        for _ in range(100000):
            nested = [nested]
        return nested
        """), OK),
    # -- the entry point: what runs must be what was audited --------------------------------
    ("entry", "rebind solve after the audited def", """
def solve(item, solver):
    return "A"
def _other(item, solver):
    return "ESCAPED the rebound function ran"
solve = _other
""", {"entry_mismatch"}),
    ("entry", "decorate solve", """
def _swap(function):
    return lambda item, solver: "ESCAPED the decorator's function ran"
@_swap
def solve(item, solver):
    return "A"
""", {"entry_mismatch"}),
    ("entry", "give solve other code", """
def solve(item, solver):
    return "A"
def _other(item, solver):
    return "ESCAPED other code ran"
solve.__code__ = _other.__code__
""", {"entry_mismatch"}),
    ("entry", "rebind solve through globals()", """
def solve(item, solver):
    return "A"
globals()["solve"] = lambda item, solver: "ESCAPED the lambda ran"
""", {"entry_mismatch"}),
    # -- the gold answer -----------------------------------------------------------------------
    ("gold", "search the item and the interpreter for the gold", _attempt("""
        import gc
        blobs = [repr(vars(item))]
        for obj in gc.get_objects():
            if isinstance(obj, dict) and "answer" in obj:
                blobs.append(repr(obj))
        text = " ".join(blobs)
        return "ESCAPED gold" if "'answer': 'C'" in text or '"answer": "C"' in text else "A"
        """), OK),
]


CATALOGUE: tuple[Attack, ...] = tuple(Attack(category, name, program, frozenset(statuses))
                                      for category, name, program, statuses in _ENTRIES)


def attack(name: str) -> Attack:
    """The catalogue's attack called ``name``."""
    for each in CATALOGUE:
        if each.name == name:
            return each
    raise KeyError(name)


@dataclass
class Verdict:
    """How one attack ended in one sandbox."""

    attack: Attack
    passed: bool
    status: str
    why: str = ""  # what got through, when not passed
    isolation: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    sandbox: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)

    def table(self) -> str:
        """One line per attack, then the count contained."""
        lines = [f"{'':4}  {'category':8}  {'attack':48}  {'status':15}  {'isolation':12}  why"]
        for v in self.verdicts:
            lines.append(f"{'ok' if v.passed else 'FAIL':4}  {v.attack.category:8}  "
                         f"{v.attack.name[:48]:48}  {v.status:15}  {v.isolation or '-':12}  "
                         f"{v.why}".rstrip())
        contained = sum(v.passed for v in self.verdicts)
        lines.append(f"sandbox {self.sandbox!r}: {contained}/{len(self.verdicts)} hostile "
                     f"programs contained")
        return "\n".join(lines)


class _Budget:
    """Solver calls answered "C", the first one over ``BUDGET`` refused (as cgr does)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.made >= BUDGET:
            return {"error": "budget_exceeded"}
        self.made += 1
        return {"value": 0.5 if message.get("kind") == "judge" else "C"}


@contextlib.contextmanager
def _secret_in_the_parent() -> Iterator[None]:
    before = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = before


def _left_on_host() -> set[str]:
    try:
        return LEFT_ON_HOST & set(os.listdir("/tmp"))
    except OSError:
        return set()


def run_attack(sandbox: Sandbox, hostile: Attack) -> Verdict:
    """Run one attack in ``sandbox`` and judge it."""
    before = _left_on_host()
    started = time.perf_counter()
    with _secret_in_the_parent():
        try:
            result = sandbox.run(hostile.program, ITEM, handle_call=_Budget(), limits=LIMITS,
                                 seed=1)
        except SandboxError as err:
            return Verdict(hostile, False, "not run", f"the sandbox could not run it: {err}",
                           seconds=time.perf_counter() - started)
    return _judge(hostile, result, _left_on_host() - before, time.perf_counter() - started)


def _judge(hostile: Attack, result: SandboxResult, left: set[str], seconds: float) -> Verdict:
    said = " ".join(str(part) for part in (result.answer, result.message, result.output)
                    if part)
    why = []
    if result.status not in hostile.statuses:
        why.append(f"ended as {result.status} (contained: {', '.join(sorted(hostile.statuses))})"
                   + (f": {result.message}" if result.message else ""))
    if "ESCAPED" in said:
        at = said.index("ESCAPED")
        why.append(said[at:at + 120].strip())
    if left:
        why.append(f"left {', '.join(sorted(left))} in the host's /tmp")
    for part in (result.answer, result.message, result.output, result.traceback, result.stderr):
        try:
            str(part).encode("utf-8")
        except UnicodeEncodeError:
            why.append("the result holds text that is not valid UTF-8")
            break
    return Verdict(hostile, not why, result.status, "; ".join(why), result.isolation, seconds)


def check(name: str, *, only: Sequence[str] = ()) -> Report:
    """Run the catalogue (or the attacks whose name or category is in ``only``) against the
    sandbox registered as ``name``. Raises ``PluginError`` for an unknown name."""
    sandbox = as_sandbox(plugins.sandbox(name), name)
    report = Report(name)
    for hostile in CATALOGUE:
        if not only or hostile.name in only or hostile.category in only:
            report.verdicts.append(run_attack(sandbox, hostile))
    return report


EXAMPLES = """\
    cgr sandbox-check bwrap
    cgr sandbox-check process --only net   # one category of attacks
    cgr sandbox-check --list
    """


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options, shared by ``cgr sandbox-check`` and ``python -m``."""
    parser.add_argument("name", nargs="?", default="bwrap", help="sandbox backend (%(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="CATEGORY|ATTACK",
                        help="run only these attacks (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")


def run_suite(args: argparse.Namespace) -> int:
    """Print the table; exit status 1 when an attack got through, 2 for a bad argument."""
    if args.list:
        for hostile in CATALOGUE:
            print(f"{hostile.category:8}  {hostile.name:48}  {', '.join(sorted(hostile.statuses))}")
        return 0
    known = {hostile.name for hostile in CATALOGUE} | {hostile.category for hostile in CATALOGUE}
    unknown = [each for each in args.only if each not in known]
    if unknown:
        print(f"cgr sandbox-check: --only {unknown[0]!r}: no such attack or category (see "
              "--list)", file=sys.stderr)
        return 2
    try:
        report = check(args.name, only=args.only)
    except CGRError as err:
        print(f"cgr sandbox-check: {err}", file=sys.stderr)
        return 2
    print(report.table())
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cgr sandbox-check", description="Run the catalogue of hostile programs against "
        "a registered sandbox backend (`cgr plugins` lists them).",
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(EXAMPLES).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_suite(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
