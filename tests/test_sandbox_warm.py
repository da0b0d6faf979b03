"""Warm sandboxes: the same isolation per program as a cold one, shared safely between threads.

Each isolation property is checked from inside a program (what it can see and do) and, where
the kernel lets us, from outside (cgroups, leftover processes), for warm and for cold starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from cgr_plugin.sandbox import cgroups, pool, zygote_client
from cgr_plugin.sandbox.runner import WARM_ENV, SandboxLimits, isolation_level, run_program

from .conftest import REPO
from .test_sandbox import write_probe

ITEM = {"id": "q1", "question": "What is 2 + 2?", "letters": ["A", "B", "C"],
        "choices": ["3", "4", "5"], "context": None, "payload": None, "metadata": {}}
FAST = SandboxLimits(wall_seconds=5, cpu_seconds=5, memory_bytes=256 << 20, processes=16,
                     output_chars=2000)

pytestmark = pytest.mark.skipif(isolation_level() == "process",
                                reason="bubblewrap is not usable on this machine")
needs_cgroup = pytest.mark.skipif(isolation_level() != "bwrap+cgroup",
                                  reason="no cgroup limits on this machine")


def warm_available() -> bool:
    return pool.warm_pool() is not None


@pytest.fixture(params=["warm", "cold"])
def start(request, monkeypatch):
    """Run the test once with warm sandboxes and once with cold ones."""
    if request.param == "warm" and not warm_available():
        pytest.skip("warm sandboxes cannot be set up on this machine")
    monkeypatch.setenv(WARM_ENV, "1" if request.param == "warm" else "0")
    return request.param


def answer_b(call):
    return {"value": "B"}


def run(program, limits=FAST, handle=answer_b, item=ITEM):
    return run_program(program, item, handle_call=handle, limits=limits, seed=1)


def host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_warm_is_the_default_and_cold_can_be_forced(monkeypatch):
    if not warm_available():
        pytest.skip("warm sandboxes cannot be set up on this machine")
    monkeypatch.delenv(WARM_ENV, raising=False)
    warm = run("def solve(item, solver):\n    return solver.ask('x')\n")
    monkeypatch.setenv(WARM_ENV, "0")
    cold = run("def solve(item, solver):\n    return solver.ask('x')\n")
    assert (warm.status, warm.answer, warm.start) == ("ok", "B", "warm")
    assert (cold.status, cold.answer, cold.start) == ("ok", "B", "cold")
    assert warm.isolation == cold.isolation == isolation_level()


def test_nobody_without_capabilities(start):
    program = """
import os
def solve(item, solver):
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    keys = ["Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
            "NoNewPrivs"]
    return {key: status[key].split() for key in keys}
"""
    result = run(program)
    assert result.status == "ok", result
    seen = result.answer
    if os.geteuid() == 0:
        assert seen["Uid"] == ["65534"] * 4 and seen["Gid"] == ["65534"] * 4
    assert seen["Groups"] == []
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(seen[key][0], 16) == 0, (key, seen[key])
    assert seen["NoNewPrivs"] == ["1"]


def test_no_network_but_loopback(start):
    program = """
import socket
def solve(item, solver):
    devices = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        outside = "connected"
    except OSError as err:
        outside = type(err).__name__
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    socket.create_connection(server.getsockname(), timeout=2).close()
    return devices, outside
"""
    result = run(program)
    assert result.status == "ok", result
    devices, outside = result.answer
    assert devices == ["lo"] and outside != "connected"


def test_own_pid_namespace_only(start):
    program = """
import os, signal
def solve(item, solver):
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    refused = []
    for pid in range(1, 4096):
        if pid not in pids:
            try:
                os.kill(pid, 0)
                refused.append(pid)  # a process we could signal but cannot see
            except OSError:
                pass
    return pids, os.getpid(), os.getppid(), refused
"""
    result = run(program)
    assert result.status == "ok", result
    pids, own, parent, hidden = result.answer
    assert (own, parent) == (2, 1)  # PID 1 is the sandbox's init, as with bubblewrap's
    assert pids == [1, 2] and hidden == []


def test_empty_environment_and_rlimits(start, monkeypatch):
    monkeypatch.setenv("CGR_TEST_SECRET", "s3cret-token")
    program = """
import os, resource
def solve(item, solver):
    names = ["CPU", "AS", "FSIZE", "NOFILE", "NPROC", "CORE"]
    limits = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n)) for n in names}
    return dict(os.environ), limits, os.getcwd()
"""
    limits = SandboxLimits(wall_seconds=5, cpu_seconds=4, memory_bytes=300 << 20,
                           file_bytes=1 << 20, processes=12)
    result = run(program, limits=limits)
    assert result.status == "ok", result
    environ, rlimits, cwd = result.answer
    assert set(environ) <= {"PATH", "HOME", "LANG", "PYTHONHASHSEED", "PWD"}, environ
    assert "s3cret-token" not in json.dumps(result.answer)
    assert rlimits == {"CPU": [4, 6], "AS": [300 << 20] * 2, "FSIZE": [1 << 20] * 2,
                       "NOFILE": [64, 64], "NPROC": [12, 12], "CORE": [0, 0]}
    assert cwd == "/tmp"


def test_read_only_everywhere_but_tmp(start, tmp_path):
    paths = [str(tmp_path / "escape.txt"), "/usr/escape.txt", "/escape.txt", "/dev/shm/x",
             "/dev/x", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
             str(REPO / "escape.txt"), "/tmp/inside.txt"]
    result = run(write_probe(paths))
    assert result.status == "ok", result
    assert result.answer[-1] == "wrote /tmp/inside.txt"
    assert not any(o.startswith("wrote") for o in result.answer[:-1]), result.answer
    assert not (tmp_path / "escape.txt").exists() and not (REPO / "escape.txt").exists()


def test_tmp_is_private_and_capped(start):
    token = uuid.uuid4().hex
    first = run(f"""
import os
def solve(item, solver):
    with open("/tmp/{token}", "w") as fh:
        fh.write("secret")
    try:
        with open("/tmp/big", "wb") as fh:
            fh.write(b"x" * (80 << 20))
        big = "wrote 80 MB"
    except OSError as err:
        big = type(err).__name__
    return sorted(os.listdir("/tmp")), big
""", limits=SandboxLimits(wall_seconds=5, cpu_seconds=5, file_bytes=100 << 20))
    assert first.status == "ok", first
    assert token in first.answer[0] and first.answer[1] != "wrote 80 MB"  # /tmp is 64 MB
    later = run("import os\ndef solve(item, solver):\n    return os.listdir('/tmp')\n")
    assert later.status == "ok" and later.answer == []


def namespace_pids(pid: str) -> list[str]:
    """``pid`` in each PID namespace it is in, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[1:]
    return []


@needs_cgroup
def test_program_and_its_children_are_in_a_capped_cgroup_of_their_own(start):
    """Seen from outside: while the program waits for the solver, the pids and memory cgroups
    holding its processes cap them; when it ends none of them is left there, and the groups
    are removed (a warm sandbox's S, our code, leaves it a moment later)."""
    seen: dict = {}
    where = cgroups.hierarchy()
    pids_root, memory_root = where.roots[0], where.memory_root
    memory_cap = "memory.limit_in_bytes" if where.version == 1 else "memory.max"

    def look(call):
        for folder in pids_root.glob("cgr-*"):
            procs = (folder / "cgroup.procs").read_text().split()
            if len(procs) >= 5 and (folder / "pids.max").read_text().strip() == "16":
                memory = memory_root / folder.name
                nspids = {pid: namespace_pids(pid) for pid in procs}
                depth = max(len(each) for each in nspids.values())
                program = [pid for pid, each in nspids.items()  # the sandbox's init is ours
                           if len(each) == depth and each[-1] != "1"]
                seen.update(folder=folder, procs=procs, memory=memory, program=program,
                            memory_procs=(memory / "cgroup.procs").read_text().split(),
                            memory_max=int((memory / memory_cap).read_text()))
        return {"value": "B"}

    program = """
import subprocess
def solve(item, solver):
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    answer = solver.ask("look now")
    for child in children:
        child.kill()
    return answer
"""
    result = run(program, handle=look)
    assert result.status == "ok", result
    assert seen, "no pids cgroup held the program's processes"
    assert sorted(seen["procs"]) == sorted(seen["memory_procs"])
    assert seen["memory_max"] == FAST.memory_bytes  # the documented cap, for all together
    assert len(seen["program"]) == 4  # the worker and its three children
    try:
        left = (seen["folder"] / "cgroup.procs").read_text().split()
    except OSError:
        left = []
    assert not set(left) & set(seen["program"])
    for _ in range(100):  # a warm sandbox's emptied cgroup is removed moments later
        if not seen["folder"].exists() and not seen["memory"].exists():
            break
        time.sleep(0.05)
    assert not seen["folder"].exists() and not seen["memory"].exists()


def test_nothing_a_program_starts_outlives_it(start):
    marker = f"{time.time() % 1000:.6f}"
    program = f"""
import os, subprocess
def solve(item, solver):
    subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
    if os.fork() == 0:  # a daemon: double fork, new session, ignore SIGTERM/SIGHUP
        os.setsid()
        if os.fork() == 0:
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    import time
    time.sleep(0.2)
    return "left them running"
"""
    result = run(program)
    assert result.status == "ok", result
    assert host_processes_with(marker) == []  # dead before run_program returned


def test_a_program_cannot_see_touch_or_kill_a_concurrent_sibling(start):
    """A holds a file in its /tmp and a child process while B, running at the same time,
    looks for both and kills every process it can name."""
    marker = f"{time.time() % 1000:.6f}"
    token = uuid.uuid4().hex
    a_ready, b_done = threading.Event(), threading.Event()

    def a_calls(call):
        a_ready.set()
        b_done.wait(30)
        return {"value": "B"}

    a_program = f"""
import os, subprocess
def solve(item, solver):
    with open("/tmp/{token}", "w") as fh:
        fh.write("mine")
    child = subprocess.Popen(["sleep", "{marker}"])
    solver.ask("B may look now")
    return child.poll() is None and os.path.exists("/tmp/{token}")
"""
    b_program = f"""
import os, signal
def solve(item, solver):
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                seen.append(open(f"/proc/{{pid}}/cmdline", "rb").read().decode(errors="replace"))
            except OSError:
                pass
    killed = []
    for pid in range(1, 32768):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    return {{"marker": any("{marker}" in c for c in seen), "tmp": os.listdir("/tmp"),
             "killed": killed}}
"""
    outcome: dict = {}
    a = threading.Thread(target=lambda: outcome.update(a=run(a_program, handle=a_calls)))
    a.start()
    assert a_ready.wait(30)
    try:
        outcome["b"] = run(b_program)
    finally:
        b_done.set()
        a.join(60)
    assert outcome["b"].status == "ok", outcome["b"]
    assert outcome["b"].answer["marker"] is False
    assert outcome["b"].answer["tmp"] == []
    assert set(outcome["b"].answer["killed"]) <= {1}  # only its own init (which ignores it)
    assert (outcome["a"].status, outcome["a"].answer) == ("ok", True), outcome["a"]


def test_eight_threads_at_once_get_their_own_results(start):
    """Eight programs in flight together (a barrier holds every first call until all eight
    have made one), each answering from its own item and its own solver replies, each in
    namespaces of its own, none with a way to the kernel's keys (keyctl is refused)."""
    barrier = threading.Barrier(8, timeout=60)
    program = """
import os
def solve(item, solver):
    with open("/tmp/mine", "w") as fh:
        fh.write(item.id)
    replies = [solver.ask(f"{item.id}:{i}") for i in range(3)]
    others = sorted(os.listdir("/tmp"))
    spaces = {n: os.readlink("/proc/self/ns/" + n)
              for n in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")}
    if os.uname().machine == "x86_64":  # keyctl(KEYCTL_GET_KEYRING_ID, session keyring)
        import ctypes
        spaces["keyring"] = ctypes.CDLL(None).syscall(250, 0, -3, 0)
    return [item.id, replies, open("/tmp/mine").read(), others, spaces]
"""

    def handle(call):
        if call["prompt"].endswith(":0"):
            barrier.wait()
        return {"value": call["prompt"][::-1]}

    results: dict[str, object] = {}

    def one(n: int) -> None:
        item = dict(ITEM, id=f"item{n}")
        results[item["id"]] = run(program, handle=handle, item=item)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == [f"item{n}" for n in range(8)]
    for name, result in results.items():
        assert result.status == "ok", result
        assert result.answer[:4] == [name, [f"{name}:{i}"[::-1] for i in range(3)], name,
                                     ["mine"]]
    for space in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
        seen = [result.answer[4][space] for result in results.values()]
        assert len(set(seen)) == 8, (space, seen)
        assert os.readlink(f"/proc/self/ns/{space}") not in seen
    keyrings = [result.answer[4].get("keyring") for result in results.values()]
    if keyrings[0] is not None:  # the seccomp filter refuses keyctl to every program
        assert keyrings == [-1] * 8, keyrings


def test_budget_and_timeouts_still_apply_when_warm(start):
    assert run("def solve(item, solver):\n    while True:\n        pass\n",
               limits=SandboxLimits(wall_seconds=1, cpu_seconds=3)).status == "timeout"
    refused = run("def solve(item, solver):\n    return solver.ask('x')\n",
                  handle=lambda call: {"error": "budget_exceeded"})
    assert refused.status == "budget_exceeded"


def test_zygote_death_mid_run_is_a_status_and_the_next_program_runs_warm(monkeypatch):
    if not warm_available():
        pytest.skip("warm sandboxes cannot be set up on this machine")
    monkeypatch.setenv(WARM_ENV, "1")
    warm = pool.warm_pool()

    def kill_the_zygote(call):
        zygote = warm.zygote
        assert zygote is not None
        os.killpg(zygote.proc.pid, signal.SIGKILL)
        zygote.proc.wait(10)
        return {"value": "B"}

    program = "def solve(item, solver):\n    solver.ask('x')\n    return solver.ask('y')\n"
    result = run(program, handle=kill_the_zygote)
    assert result.status == "crashed"
    assert "server died" in result.message
    after = [run("def solve(item, solver):\n    return solver.ask('x')\n") for _ in range(3)]
    assert [(r.status, r.answer) for r in after] == [("ok", "B")] * 3
    assert after[-1].start == "warm"


def _two_programs_from_a_fresh_pool(monkeypatch, caplog):
    """Run two programs with no pool started yet; their results and the fallback warnings."""
    monkeypatch.setattr(pool, "_pool", None)
    monkeypatch.setattr(pool, "_warm_failure", None)
    monkeypatch.setenv(WARM_ENV, "1")
    with caplog.at_level("WARNING", logger="cgr_plugin.sandbox"):
        results = [run("def solve(item, solver):\n    return solver.ask('x')\n")
                   for _ in range(2)]
    warnings = [r.getMessage() for r in caplog.records
                if "warm sandboxes are not available" in r.getMessage()]
    return results, warnings


def test_without_warm_sandboxes_everything_runs_cold_after_one_warning(monkeypatch, caplog):
    def refuse(self):
        raise OSError("no nested user namespaces here")

    monkeypatch.setattr(zygote_client.Zygote, "__init__", refuse)
    results, warnings = _two_programs_from_a_fresh_pool(monkeypatch, caplog)
    assert [(r.status, r.start) for r in results] == [("ok", "cold")] * 2
    assert len(warnings) == 1 and "no nested user namespaces" in warnings[0]


def test_when_nested_namespaces_are_refused_programs_run_cold(monkeypatch, caplog, tmp_path):
    """A zygote starts, but no sandbox it forks can unshare: warm sandboxes are given up."""
    broken = tmp_path / "zygote.py"
    source = zygote_client.ZYGOTE.read_text()
    line = '_check(_libc.unshare(_NAMESPACES & ~_CLONE_NEWCGROUP), "unshare")'
    assert line in source
    broken.write_text(source.replace(
        line, 'raise PermissionError(1, "unshare: Operation not permitted")'))
    monkeypatch.setattr(zygote_client, "ZYGOTE", broken)
    results, warnings = _two_programs_from_a_fresh_pool(monkeypatch, caplog)
    assert [(r.status, r.answer, r.start) for r in results] == [("ok", "B", "cold")] * 2
    assert len(warnings) == 1 and "unshare: Operation not permitted" in warnings[0]


def test_no_way_back_to_the_zygote_mounts(start):
    """In a user namespace of its own (which gives it capabilities there), a program still
    cannot unmount its /proc or /tmp: they are locked, so the zygote's /proc (every sandbox's
    processes) and its /tmp stay out of reach; nor can it mount a fresh /proc."""
    program = """
import ctypes, os
def solve(item, solver):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
        return "no nested user namespace: " + os.strerror(ctypes.get_errno())
    outcomes = {}
    for target in ("/proc", "/tmp", "/proc/sys"):
        outcomes["umount " + target] = libc.umount2(target.encode(), 2) == 0  # MNT_DETACH
    os.makedirs("/tmp/p", exist_ok=True)
    outcomes["mount proc"] = libc.mount(b"proc", b"/tmp/p", b"proc", 0, None) == 0
    outcomes["pids"] = sorted(p for p in os.listdir("/proc") if p.isdigit())
    return outcomes
"""
    result = run(program)
    assert result.status == "ok", result
    if isinstance(result.answer, str):
        pytest.skip(result.answer)
    assert result.answer == {"umount /proc": False, "umount /tmp": False,
                             "umount /proc/sys": False, "mount proc": False,
                             "pids": ["1", "2"]}


ZYGOTE_USER = """
import os, sys
from pathlib import Path
from cgr_plugin.sandbox.runner import run_program
from cgr_plugin.sandbox import pool
result = run_program("def solve(item, solver):\\n    return 'A'\\n",
                     {"id": "x", "question": "?", "letters": ["A"], "choices": ["a"]},
                     handle_call=lambda call: {"value": "A"})
assert result.start == "warm", result
tree, todo = [], [pool._pool.zygote.proc.pid]
while todo:  # the zygote's bwrap, its init, the zygote, and the sandboxes it started
    pid = todo.pop()
    tree.append(pid)
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            todo += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass  # one that has just exited
print(*tree, flush=True)
if sys.argv[1] == "die":
    os.kill(os.getpid(), 9)
"""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("ending", ["exit", "die"])
def test_the_zygote_goes_with_its_parent(ending):
    if not warm_available():
        pytest.skip("warm sandboxes cannot be set up on this machine")
    done = subprocess.run([sys.executable, "-c", ZYGOTE_USER, ending], capture_output=True,
                          text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), WARM_ENV: "1"})
    tree = [int(pid) for pid in done.stdout.split()]
    assert len(tree) >= 3, done.stdout  # bwrap, its init, the zygote (and what it started)
    for _ in range(100):
        if not any(running(pid) for pid in tree):
            break
        time.sleep(0.05)
    assert [pid for pid in tree if running(pid)] == []
    cgroups.sweep_stale_cgroups()  # what a killed parent leaves: empty groups, swept at start


@needs_cgroup
def test_the_start_up_sweep_leaves_the_groups_of_other_runs_alone():
    """Two runs at once (two ranks, two users' jobs): one's start-up sweep must not remove the
    other's group in the moment between its mkdir and its program's start, when it is empty;
    only an old empty group whose maker has gone is a killed run's leftover."""
    root = cgroups.hierarchy().roots[0]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    old = time.time() - 2 * cgroups.STALE_AFTER_S
    made = {"running maker": root / f"cgr-{other.pid}-aaaaaaaaaaaa",
            "fresh, maker gone": root / f"cgr-{gone}-bbbbbbbbbbbb",
            "old, maker gone": root / f"cgr-{gone}-cccccccccccc"}
    try:
        for folder in made.values():
            folder.mkdir()
        for name in ("running maker", "old, maker gone"):
            os.utime(made[name], (old, old))
        cgroups.sweep_stale_cgroups()
        assert {name: folder.exists() for name, folder in made.items()} == {
            "running maker": True, "fresh, maker gone": True, "old, maker gone": False}
    finally:
        other.kill()
        other.wait()
        for folder in made.values():
            with contextlib.suppress(OSError):
                folder.rmdir()
