"""The sandbox interface around the isolation: weak isolation only by opt-in, plugin backends
old and new behind one interface, cgroup v1 and v2, and the conformance suite's command.

Most of these run without bubblewrap (a host without it is what several of them are about).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from cgr_plugin import plugins
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.hookspecs import hookimpl
from cgr_plugin.models.backends import Generation
from cgr_plugin.run.assisted import AssistedSettings, run_item_program
from cgr_plugin.sandbox import (
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    SandboxStartError,
    as_sandbox,
    cgroups,
    conformance,
    isolation,
)
from cgr_plugin.sandbox.runner import run_program

from .conftest import REPO

ITEM = {"id": "q1", "question": "What is 2 + 2?", "letters": ["A", "B", "C"],
        "choices": ["3", "4", "5"], "context": None, "payload": None, "metadata": {}}
FAST = SandboxLimits(wall_seconds=3, cpu_seconds=3, memory_bytes=256 << 20, processes=16)
needs_bwrap = pytest.mark.skipif(isolation.isolation_level() == "process",
                                 reason="bubblewrap is not usable on this machine")
ENVIRON = "import os\ndef solve(item, solver):\n    return dict(os.environ)\n"


@pytest.fixture
def no_bwrap(monkeypatch):
    """A host where bubblewrap cannot run (as if it were not installed), warnings not yet
    given, and no opt-in in the environment."""
    monkeypatch.setattr(isolation, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(isolation, "_warned", set())
    monkeypatch.delenv(isolation.WEAK_ENV, raising=False)


def run(program, **kwargs):
    return run_program(program, ITEM, handle_call=lambda call: {"value": "B"}, limits=FAST,
                       seed=1, **kwargs)


# -- weak isolation: never a silent fallback ---------------------------------------------------
def test_without_bubblewrap_programs_do_not_run_and_say_how_to_fix_it(no_bwrap, tmp_path,
                                                                      caplog):
    marker = tmp_path / "ran"
    os.chmod(tmp_path, 0o777)  # writable by the sandbox user too, had the program run
    program = f"def solve(item, solver):\n    open({str(marker)!r}, 'w').write('x')\n"
    with caplog.at_level("WARNING", logger="cgr_plugin.sandbox"):
        result = run(program)
    assert (result.status, result.answer, result.isolation) == ("crashed", None, None)
    assert "bubblewrap (bwrap) is not installed" in result.message
    assert "apt-get install bubblewrap" in result.message
    assert "sandbox=process" in result.message and "CGR_SANDBOX=process" in result.message
    assert not marker.exists()  # nothing ran
    assert "no sandbox" in caplog.text


def test_the_environment_opt_in_runs_programs_weakly_and_warns(no_bwrap, monkeypatch, caplog):
    monkeypatch.setenv(isolation.WEAK_ENV, "process")
    monkeypatch.setenv("CGR_TEST_SECRET", "s3cret-token")
    with caplog.at_level("WARNING", logger="cgr_plugin.sandbox"):
        result = run(ENVIRON)
    assert (result.status, result.isolation, result.start) == ("ok", "process", "cold")
    assert "s3cret-token" not in repr(result.answer)  # the environment is still emptied
    assert "CAN reach the network" in caplog.text


def test_the_process_backend_is_weak_by_name_even_where_bubblewrap_works(monkeypatch):
    """What ``--model_args sandbox=process`` runs: the registered ``process`` backend."""
    monkeypatch.setenv("CGR_TEST_SECRET", "s3cret-token")
    assert as_sandbox(plugins.sandbox("process"), "process").isolation_level() == "process"
    item = MCQAItem(id="i1", dataset="toy", question="Q?", choices=("x", "y"), answer="A")
    program = ("import os\ndef solve(item, solver):\n"
               "    return 'B' if 'CGR_TEST_SECRET' not in os.environ else 'A'\n")
    assisted, _ = run_item_program(
        f"```python\n{program}```", item, solver=Solver(), direct_prompt=str,
        settings=AssistedSettings(limits=FAST, sandbox="process"), direct_max_tokens=8)
    assert (assisted.status, assisted.answer) == ("ok", "B")  # the environment is emptied
    assert assisted.sandbox == {"backend": "process", "start": "cold", "isolation": "process"}


@needs_bwrap
def test_the_environment_opt_in_never_weakens_a_host_where_bubblewrap_works(monkeypatch):
    monkeypatch.setenv(isolation.WEAK_ENV, "process")
    assert run("def solve(item, solver):\n    return 'A'\n").isolation.startswith("bwrap")


class Solver:
    name = "scripted"

    def generate(self, requests, *, progress=False):
        return [Generation("B") for _ in requests]

    def judge(self, prompts):
        return [0.5 for _ in prompts]


def test_a_run_without_a_sandbox_records_every_item(no_bwrap):
    item = MCQAItem(id="i1", dataset="toy", question="Q?", choices=("x", "y"), answer="A")
    assisted, generator = run_item_program(
        '```python\nGENERATOR_ANSWER = "A"\ndef solve(item, solver):\n    return "A"\n```', item,
        solver=Solver(), settings=AssistedSettings(limits=FAST), direct_prompt=str,
        direct_max_tokens=8)
    assert assisted.status == "crashed" and "apt-get install bubblewrap" in assisted.error
    assert assisted.sandbox == {"backend": "bwrap", "start": None, "isolation": None,
                                "error": "SandboxUnavailable"}
    assert generator.answer == "A"  # the generator's side does not need the sandbox


# -- plugin backends: the Sandbox interface and the old function contract ----------------------
class Refusing(Sandbox):
    """A backend whose every start fails."""

    name = "refusing"

    def isolation_level(self):
        return "none"

    def start(self, limits):
        raise SandboxStartError("no capacity left")


def test_a_sandbox_failure_is_an_exception_of_run_and_a_status_of_the_old_call():
    with pytest.raises(SandboxError, match="no capacity left"):
        Refusing().run("def solve(item, solver):\n    return 'A'\n", ITEM,
                       handle_call=lambda call: {})
    result = Refusing()("def solve(item, solver):\n    return 'A'\n", ITEM,
                        handle_call=lambda call: {})
    assert (result.status, result.message) == ("crashed", "no capacity left")


def test_both_kinds_of_registered_backend_run_an_item_and_reach_the_record():
    seen = []  # the real run's limits and reply, then its provenance re-runs'

    def old_style(program, item, *, handle_call, limits, seed):
        seen.append({"limits": limits, "reply": handle_call({"type": "call", "kind": "ask",
                                                            "prompt": "?"})})
        return SandboxResult(status="ok", answer="A", isolation="in-test", start="warm")

    module = types.SimpleNamespace(register_sandboxes=hookimpl(lambda register: (
        register("old-style", old_style), register("refusing", Refusing()))))
    plugins.register(module, name="test-sandboxes")
    try:
        item = MCQAItem(id="i1", dataset="toy", question="Q?", choices=("x", "y"), answer="A")

        def record(name):
            return run_item_program("```python\ndef solve(item, solver):\n    return 'A'\n```",
                                    item, solver=Solver(),
                                    settings=AssistedSettings(limits=FAST, sandbox=name),
                                    direct_prompt=str, direct_max_tokens=8)[0]

        old = record("old-style")
        refused = record("refusing")
    finally:
        plugins.unregister("test-sandboxes")
    assert (old.status, old.answer, old.isolation, old.solver_calls) == ("ok", "A", "in-test", 1)
    assert old.sandbox == {"backend": "old-style", "start": "warm", "isolation": "in-test"}
    assert seen[0]["limits"] == FAST and seen[0]["reply"] == {"value": "B"}
    assert len(seen) == 1 + 1 + 2 * 3  # the re-runs (replay, 3 solvers, 3 orders) ran there too
    assert (refused.status, refused.error) == ("crashed", "no capacity left")
    assert refused.sandbox["error"] == "SandboxStartError"


def test_something_that_is_no_sandbox_is_refused_by_name():
    with pytest.raises(SandboxError, match="'broken'"):
        as_sandbox(42, "broken")


# -- cgroups: v1 and v2 ------------------------------------------------------------------------
V1_MOUNTS = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 25 0:28 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
34 25 0:29 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
"""
V2_MOUNTS = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate
"""


def test_a_hybrid_host_uses_its_v1_pids_and_memory_hierarchies():
    found = cgroups.find_hierarchy("8:pids:/\n4:memory:/jobs/7\n2:cpu,cpuacct:/\n0::/\n",
                                   V1_MOUNTS)
    assert found == cgroups.Hierarchy(1, (cgroups.Path("/sys/fs/cgroup/pids"),
                                          cgroups.Path("/sys/fs/cgroup/memory/jobs/7"),
                                          cgroups.Path("/sys/fs/cgroup/cpu,cpuacct")))
    assert found.memory_root == cgroups.Path("/sys/fs/cgroup/memory/jobs/7")
    without_cpu = "\n".join(line for line in V1_MOUNTS.splitlines() if "cpuacct" not in line)
    assert cgroups.find_hierarchy("8:pids:/\n4:memory:/jobs/7\n0::/\n", without_cpu).roots == (
        cgroups.Path("/sys/fs/cgroup/pids"), cgroups.Path("/sys/fs/cgroup/memory/jobs/7"))


def test_a_v2_only_host_is_found_and_used():
    found = cgroups.find_hierarchy("0::/user.slice/cgr.scope\n", V2_MOUNTS)
    assert found == cgroups.Hierarchy(2, (cgroups.Path("/sys/fs/cgroup/user.slice/cgr.scope"),))
    # in a container: the mount shows a subtree; the group's path is read relative to it
    inner = "26 22 0:23 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroups.find_hierarchy("0::/docker/abc/job\n", inner) == cgroups.Hierarchy(
        2, (cgroups.Path("/sys/fs/cgroup/job"),))
    assert isinstance(cgroups.find_hierarchy("0::/elsewhere\n", inner), str)


def test_no_cgroup_hierarchy_is_a_reason_not_a_crash():
    assert "neither" in cgroups.find_hierarchy("", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")


def test_this_machine_has_a_hierarchy_that_isolation_uses_or_says_why_not():
    found = cgroups.hierarchy()
    problem = cgroups.cgroup_problem()
    if isinstance(found, str):
        assert problem == found
    else:
        assert found.version in (1, 2) and all(root.is_dir() for root in found.roots)
    print("cgroup hierarchy here:", found, "| problem:", problem)


def test_v2_caps_and_oom_counter_are_read_and_written_in_v2_files(tmp_path):
    group = cgroups.CgroupV2()
    group.dirs.append(tmp_path)
    group.set_limits(SandboxLimits(processes=7, memory_bytes=100 << 20))
    assert (tmp_path / "pids.max").read_text() == "7"
    assert (tmp_path / "memory.max").read_text() == str(100 << 20)  # the cap as documented
    assert (tmp_path / "memory.swap.max").read_text() == "0"
    assert group.cpu_seconds() is None  # no cpu.stat: no CPU account
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert group.cpu_seconds() == 2.5
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not group.oom_killed()
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert group.oom_killed()


def test_v2_without_memory_and_pids_controllers_says_so(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu io hugetlb\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    with pytest.raises(OSError, match="no memory or pids controller"):
        cgroups._delegate_v2(tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    cgroups._delegate_v2(tmp_path)  # enabled for the children
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_v2_refuses_to_share_controllers_of_a_cgroup_other_processes_live_in(tmp_path):
    refusing = cgroups.Path("/sys/kernel/uevent_seqnum")  # readable; the kernel refuses writes
    if not refusing.exists():
        pytest.skip("no read-only kernel file to stand in for a busy cgroup")
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").symlink_to(refusing)  # as EBUSY refuses the write
    (tmp_path / "cgroup.procs").write_text(f"1\n{os.getpid()}\n")
    with pytest.raises(OSError, match="other processes live in it"):
        cgroups._delegate_v2(tmp_path)


def _v2_root():
    found = cgroups.find_hierarchy(open("/proc/self/cgroup").read(),
                                   open("/proc/self/mountinfo").read())
    if isinstance(found, cgroups.Hierarchy) and found.version == 2:
        return found.roots[0]
    for line in open("/proc/self/mountinfo"):
        if " - cgroup2 " in line:
            return cgroups.Path(line.split()[4])
    return None


def test_a_v2_group_holds_kills_and_removes_a_real_process():
    """On the kernel: cgroup.procs, cgroup.kill and removal in a v2 hierarchy (the memory and
    pids files need controllers this machine may not give to v2)."""
    root = _v2_root()
    if root is None or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup-v2 hierarchy here")
    group = cgroups.CgroupV2()
    group.dirs.append(root / f"cgr-test-{os.getpid()}")
    group.dirs[0].mkdir()
    child = subprocess.Popen(["sleep", "30"])
    try:
        group.add(child.pid)
        assert group.contains(child.pid) and group.members() == [child.pid]
        group.kill()
        assert child.wait(5) == -9
        assert not group.oom_killed()
    finally:
        child.kill()
        group.remove()
    assert not (root / f"cgr-test-{os.getpid()}").exists()


# -- the conformance suite's command -----------------------------------------------------------
def test_conformance_fails_every_attack_where_no_sandbox_can_run(no_bwrap, capsys):
    assert conformance.main(["bwrap", "--only", "net"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 4 and "the sandbox could not run it" in out
    assert "sandbox 'bwrap': 0/4 hostile programs contained" in out


def test_conformance_catches_what_weak_isolation_lets_through(capsys):
    assert conformance.main(["process", "--only",
                             "find the project, the datasets or the gold"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "ESCAPED" in out and "0/1" in out


@needs_bwrap
def test_conformance_passes_the_builtin_sandbox_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "cgr_plugin.sandbox.conformance", "bwrap",
                           "--only", "net", "--only", "signal"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandbox 'bwrap': 7/7 hostile programs contained" in done.stdout


def test_conformance_names_bad_arguments(capsys):
    assert conformance.main(["no-such-sandbox"]) == 2
    assert "no-such-sandbox" in capsys.readouterr().err
    assert conformance.main(["bwrap", "--only", "no-such-attack"]) == 2  # before anything runs
    assert "'no-such-attack': no such attack or category" in capsys.readouterr().err
    assert conformance.main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(conformance.CATALOGUE)


def test_v1_without_a_writable_cpuacct_still_caps_pids_and_memory(tmp_path, monkeypatch, caplog):
    pids, memory, cpu = (tmp_path / name for name in ("pids", "memory", "cpuacct"))
    for folder in (pids, memory):
        folder.mkdir()
    cpu.write_text("")  # a file, not a folder: no group can be made in it
    monkeypatch.setattr(cgroups, "hierarchy", lambda: cgroups.Hierarchy(1, (pids, memory, cpu)))
    monkeypatch.setattr(cgroups.CgroupV1, "_write_limits", lambda self, limits: None)
    group = cgroups.new_cgroup(SandboxLimits())
    assert [folder.parent for folder in group.dirs] == [pids, memory]
    assert group.cpu_seconds() is None and "no CPU account" in caplog.text
