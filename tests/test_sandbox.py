"""The sandbox against hostile programs: each must be contained, recorded, and survived."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level, run_program

from .conftest import REPO

ITEM = {"id": "q1", "question": "What is 2 + 2?", "letters": ["A", "B", "C"],
        "choices": ["3", "4", "5"], "context": None, "payload": None, "metadata": {}}
FAST = SandboxLimits(wall_seconds=3, cpu_seconds=3, memory_bytes=256 << 20, processes=16,
                     output_chars=2000)

pytestmark = pytest.mark.skipif(isolation_level() == "process",
                                reason="bubblewrap is not usable on this machine")


def answer_b(call):
    return {"value": "B"}


def run(program, limits=FAST, handle=answer_b):
    return run_program(program, ITEM, handle_call=handle, limits=limits, seed=1)


def test_plain_program_runs_and_reports_isolation():
    result = run("def solve(item, solver):\n    return solver.ask(item.question)\n")
    assert (result.status, result.answer) == ("ok", "B")
    assert result.isolation.startswith("bwrap")


def test_gold_answer_is_not_visible_to_the_program():
    result = run("def solve(item, solver):\n    return sorted(vars(item))\n")
    assert "answer" not in result.answer and "gold" not in result.answer


def test_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    program = f"""
import socket
def solve(item, solver):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2)
        return "connected"
    except OSError as err:
        return type(err).__name__
"""
    result = run(program)
    server.close()
    thread.join()
    assert result.status == "ok" and result.answer != "connected"
    assert accepted == []


def write_probe(paths):
    """A program that tries to write each path and reports what happened."""
    return f"""
def solve(item, solver):
    outcomes = []
    for path in {paths!r}:
        try:
            with open(path, "w") as fh:
                fh.write("x")
            outcomes.append("wrote " + path)
        except OSError as err:
            outcomes.append(type(err).__name__)
    return outcomes
"""


def test_no_writes_outside_private_tmp(tmp_path):
    target = tmp_path / "escape.txt"
    result = run(write_probe([str(target), "/usr/escape.txt", "/root/escape.txt",
                              "/escape.txt", "/tmp/inside.txt"]))
    assert result.status == "ok"
    assert result.answer[-1] == "wrote /tmp/inside.txt"
    assert not any(str(o).startswith("wrote") for o in result.answer[:-1])
    assert not target.exists() and not os.path.exists("/escape.txt")


def test_no_view_of_environment_home_or_project(monkeypatch):
    monkeypatch.setenv("CGR_TEST_SECRET", "s3cret-token")
    program = f"""
import os
def solve(item, solver):
    seen = dict(os.environ)
    try:
        seen["readme"] = open({str(REPO / 'README.md')!r}).read()[:50]
    except OSError as err:
        seen["readme"] = type(err).__name__
    seen["home"] = sorted(os.listdir(os.path.expanduser("~")))
    return seen
"""
    result = run(program)
    assert result.status == "ok"
    assert "s3cret-token" not in repr(result)
    assert result.answer["readme"] in ("FileNotFoundError", "PermissionError")


def test_infinite_loop_times_out():
    result = run("def solve(item, solver):\n    while True:\n        pass\n")
    assert result.status == "timeout"


def test_ignoring_sigterm_does_not_help():
    program = """
import signal, time
def solve(item, solver):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
"""
    started = time.perf_counter()
    assert run(program).status == "timeout"
    assert time.perf_counter() - started < 20


def test_memory_bomb_hits_the_memory_limit():
    program = """
def solve(item, solver):
    hoard = []
    while True:
        hoard.append(bytearray(50 << 20))
"""
    assert run(program).status == "memory_limit"


def test_fork_bomb_is_contained():
    program = """
import os
def solve(item, solver):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""
    started = time.perf_counter()
    result = run(program)
    assert result.status in ("timeout", "runtime_error", "crashed")
    assert time.perf_counter() - started < 30
    # the machine still forks normally afterwards
    assert run("def solve(item, solver):\n    return 'A'\n").status == "ok"


def test_huge_output_is_truncated():
    program = """
import os, sys
def solve(item, solver):
    print("x" * 10_000_000)
    os.write(1, b"y" * 5_000_000)
    return "C"
"""
    result = run(program)
    assert (result.status, result.answer) == ("ok", "C")
    assert len(result.output) <= FAST.output_chars


def test_killing_the_parent_or_spawning_a_shell_is_contained(tmp_path):
    program = f"""
import os, signal, subprocess
def solve(item, solver):
    subprocess.run(["sh", "-c", "echo pwned > {tmp_path}/shell.txt; kill -9 -1"])
    for pid in (os.getppid(), 1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return "A"
"""
    result = run(program)
    assert result.status in ("ok", "crashed")
    assert not (tmp_path / "shell.txt").exists()
    assert run("def solve(item, solver):\n    return 'B'\n").answer == "B"  # we are still here


def test_solver_waits_do_not_count_as_program_time():
    def slow(call):
        time.sleep(1.5)
        return {"value": "B"}

    limits = SandboxLimits(wall_seconds=1, cpu_seconds=5)
    program = "def solve(item, solver):\n    solver.ask('a')\n    return solver.ask('b')\n"
    result = run(program, limits=limits, handle=slow)
    assert (result.status, result.answer) == ("ok", "B")
    assert result.solver_seconds >= 3 > result.program_seconds


@pytest.mark.parametrize("program, status", [
    ("def solve(item, solver)\n    return 'A'\n", "syntax_error"),
    ("def answer(item, solver):\n    return 'A'\n", "missing_entry"),
    ("def solve(item, solver):\n    return 1 / 0\n", "runtime_error"),
    ("import sys\ndef solve(item, solver):\n    sys.exit(3)\n", "runtime_error"),
    ("import os\ndef solve(item, solver):\n    os._exit(0)\n", "crashed"),
])
def test_program_failures_get_a_status(program, status):
    assert run(program).status == status


def test_refused_call_cannot_be_swallowed():
    program = """
def solve(item, solver):
    try:
        solver.ask("one more")
    except Exception:
        return "A"
"""
    result = run(program, handle=lambda call: {"error": "budget_exceeded"})
    assert result.status == "budget_exceeded"


def test_process_and_memory_caps_hold_for_the_whole_program():
    if isolation_level() != "bwrap+cgroup":
        pytest.skip("no cgroup limits on this machine")
    program = """
import os, time
def solve(item, solver):
    made = 0
    for _ in range(64):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        made += 1
    return made
"""
    limits = SandboxLimits(wall_seconds=5, cpu_seconds=5, processes=16)
    result = run(program, limits=limits)
    assert result.status == "ok" and result.answer < 16
    hog = """
import os
def solve(item, solver):
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = bytearray(200 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            os._exit(0)
        children.append(pid)
    return [os.waitpid(pid, 0)[1] for pid in children]
"""
    result = run(hog, limits=SandboxLimits(wall_seconds=10, cpu_seconds=10,
                                           memory_bytes=256 << 20))
    assert result.status == "memory_limit" or any(code != 0 for code in result.answer)


def test_root_only_kernel_files_are_out_of_reach():
    result = run(write_probe(["/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
                              "/proc/sysrq-trigger", "/dev/shm/x", "/dev/null2"]))
    assert result.status == "ok"
    assert not any(o.startswith("wrote") for o in result.answer), result.answer


@pytest.mark.parametrize("program, status", [
    # forged protocol lines: an unknown status, and deep nesting
    ("import sys, os\ndef solve(item, solver):\n"
     "    os.write(int(sys.argv[2]), b'{\"type\": \"error\", \"status\": \"ok!\"}\\n')\n"
     "    import time; time.sleep(5)\n", "protocol_error"),
    ("import sys, os\ndef solve(item, solver):\n"
     "    os.write(int(sys.argv[2]), b'[' * 100000 + b'\\n')\n"
     "    import time; time.sleep(5)\n", "protocol_error"),
    # closing its own pipes, then lingering
    ("import sys, os, time\ndef solve(item, solver):\n    os.close(int(sys.argv[2]))\n"
     "    time.sleep(30)\n", "crashed"),
])
def test_protocol_abuse_gets_a_status_and_never_raises(program, status):
    assert run(program).status == status


def test_call_flood_is_cut_off_at_the_budget():
    calls = []

    def budget_of_three(call):
        calls.append(call)
        return {"value": "B"} if len(calls) <= 3 else {"error": "budget_exceeded"}

    program = """
import json, os, sys
def solve(item, solver):
    line = json.dumps({"type": "call", "kind": "ask", "prompt": "x" * 1000}) + "\\n"
    for _ in range(100000):
        os.write(int(sys.argv[2]), line.encode())
"""
    result = run(program, handle=budget_of_three)
    assert result.status == "budget_exceeded" and len(calls) == 4


def test_a_program_that_stops_reading_its_replies_cannot_hang_the_parent():
    """Its input pipe shrunk to one page and a reply far larger: the reply is written without
    blocking, and the program ends at its deadline instead of the parent hanging forever."""
    program = """
import fcntl, json, os, sys, time
def solve(item, solver):
    fcntl.fcntl(int(sys.argv[-2]), 1031, 4096)  # F_SETPIPE_SZ
    os.write(int(sys.argv[-1]), (json.dumps({"type": "call", "id": 1, "kind": "ask",
                                             "prompt": "x"}) + "\\n").encode())
    time.sleep(60)
"""
    started = time.monotonic()
    result = run(program, handle=lambda call: {"value": "B" * 200_000})
    assert result.status == "protocol_error" and "stopped reading" in result.message
    assert time.monotonic() - started < FAST.wall_seconds + 3


def test_the_total_wall_limit_counts_solver_waits():
    def slow(call):
        time.sleep(0.4)
        return {"value": "B"}

    limits = SandboxLimits(wall_seconds=3, cpu_seconds=3, memory_bytes=256 << 20,
                           processes=16, total_seconds=1.5)
    program = "def solve(item, solver):\n    while True:\n        solver.ask('x')\n"
    started = time.monotonic()
    result = run(program, limits=limits, handle=slow)
    assert result.status == "timeout" and "total wall limit" in result.message
    assert time.monotonic() - started < 4


def test_a_signal_during_a_solver_call_does_not_shift_later_replies():
    program = """
import signal
class Interrupted(Exception):
    pass
def on_alarm(signum, frame):
    raise Interrupted
def solve(item, solver):
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        solver.ask("slow")
    except Interrupted:
        pass
    return [solver.ask(str(i)) for i in range(3)]
"""

    def echo(call):
        if call["prompt"] == "slow":
            time.sleep(0.5)
        return {"value": call["prompt"]}

    result = run(program, handle=echo)
    assert (result.status, result.answer) == ("ok", ["0", "1", "2"])


def test_whatever_a_program_sends_comes_back_as_valid_utf8():
    program = """
import sys
def solve(item, solver):
    print("\\ud800 out \\udcff")
    sys.__stderr__.write("\\udc80")
    solver.ask("\\udfff prompt")
    raise ValueError("\\ud800 message")
"""
    prompts = []
    result = run(program, handle=lambda call: prompts.append(call["prompt"]) or {"value": "B"})
    assert result.status == "runtime_error"
    for text in (result.output, result.message, result.traceback, *prompts):
        text.encode("utf-8")  # raises for a lone surrogate
    assert "\ufffd out \ufffd" in result.output and prompts == ["\ufffd prompt"]


@pytest.mark.parametrize(("program", "status"), [
    ("def solve(item, solver):\n    return 'A'\nsolve = lambda item, solver: 'B'\n",
     "entry_mismatch"),
    ("import functools\n@functools.lru_cache\ndef solve(item, solver):\n    return 'A'\n",
     "entry_mismatch"),
    ("def solve(item, solver):\n    return 'A'\ndef solve(item, solver):\n    return 'B'\n",
     "ok"),  # the last definition is the one audited and the one that runs
    ("import os, json, sys\ndef solve(item, solver):\n    os.write(int(sys.argv[-1]), (json."
     "dumps({'type': 'error', 'status': 'budget_exceeded'}) + '\\n').encode())\n"
     "    os._exit(0)\n", "protocol_error"),
    ("import os, json, sys\ndef solve(item, solver):\n    os.write(int(sys.argv[-1]), (json."
     "dumps({'type': 'error', 'status': 'timeout'}) + '\\n').encode())\n"
     "    os._exit(0)\n", "protocol_error"),  # no CPU spent: a forged timeout
    ("def solve(item, solver):\n    return 'A'\nreturn 1\n", "syntax_error"),  # compiler's
])
def test_statuses_are_the_parents_to_decide(program, status):
    result = run(program)
    assert result.status == status
    if status == "ok":
        assert result.answer == "B"


RELAY = """
import os, time
def burn_then_hand_over(generations):
    for _ in range(generations):
        started = time.process_time()
        while time.process_time() - started < 0.3:  # far below any per-process limit
            pass
        if os.fork():
            os._exit(0)  # the fresh fork carries on
    os._exit(0)
def solve(item, solver):
    for _ in range(2):
        if os.fork() == 0:
            burn_then_hand_over(100)
    return [solver.ask(str(i)) for i in range(8)]
"""


def test_the_cpu_limit_holds_for_the_whole_sandbox_and_during_solver_waits():
    """Forked children that hand over to fresh forks never reach a per-process limit, and the
    program clock stops while the solver answers; the cgroup's CPU account stops neither."""
    def slow(call):
        time.sleep(0.5)
        return {"value": "B"}

    limits = SandboxLimits(wall_seconds=3, cpu_seconds=1, memory_bytes=256 << 20,
                           processes=16, total_seconds=30)
    result = run(RELAY, limits=limits, handle=slow)
    if not result.isolation.endswith("cgroup"):
        pytest.skip("no cgroup counts the sandbox's CPU here")
    assert result.status == "timeout" and "CPU time" in result.message, result


def test_the_memory_cap_is_memory_bytes_for_everything_the_program_holds():
    """memfd pages are outside the address-space rlimit but charged to the program's cgroup:
    what a program holds there (reported 16 MB at a time) stays under ``memory_bytes``."""
    program = """
import os
def solve(item, solver):
    held = []
    while True:
        fd = os.memfd_create("hold")
        os.write(fd, b"x" * (16 << 20))
        held.append(fd)
        solver.ask(str(16 * len(held)))
"""
    reported = []

    def note(call):
        reported.append(int(call["prompt"]))
        return {"value": "B"}

    limits = SandboxLimits(wall_seconds=10, cpu_seconds=10, memory_bytes=256 << 20,
                           processes=16)
    result = run(program, limits=limits, handle=note)
    if not result.isolation.endswith("cgroup"):
        pytest.skip("no memory cgroup here")
    assert result.status == "memory_limit", result
    assert 128 <= max(reported) < 256, reported
