"""A cgroup per program, capping the processes and memory of everything the program runs and
counting its CPU time, on cgroup v1 (a ``pids`` and a ``memory`` hierarchy, and ``cpuacct``
where mounted) or v2 (one unified hierarchy; ``cpu.stat`` counts CPU in every group).

Where the groups go is read from ``/proc/self/cgroup`` and ``/proc/self/mountinfo``: the v1
``pids`` and ``memory`` hierarchies when both are mounted (hybrid hosts included), else the v2
hierarchy. Groups are made inside cgr's own cgroup. On v2 that cgroup must hand the ``memory``
and ``pids`` controllers to its children (``cgroup.subtree_control``); cgr enables them, and
when the kernel refuses because cgr's own process sits in that cgroup (v2 lets only a cgroup
without processes share controllers) and it is the only process there, cgr first moves itself
into a child group ``cgr-host`` (what systemd asks of delegated services). Anything else is
reported once, with the reason, and programs get rlimits only (isolation ``bwrap``).

Per program, v1: ``pids.max``, ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``
where swap is accounted), ``memory.oom_control``'s ``oom_kill``, ``cpuacct.usage``; v2:
``pids.max``, ``memory.max``, ``memory.swap.max`` (0), ``memory.events``' ``oom_kill``,
``cpu.stat``'s ``usage_usec`` and ``cgroup.kill``. The memory cap is ``memory_bytes``, the same
as the per-process address-space rlimit: it holds for everything the program's processes hold
together (heap, memfd and shared memory, files in its /tmp), not per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .interface import SandboxLimits

__all__ = ["Cgroup", "CgroupV1", "CgroupV2", "Hierarchy", "cgroup_problem", "find_hierarchy",
           "hierarchy", "new_cgroup", "sweep_stale_cgroups"]

log = logging.getLogger(__name__)
V1_CONTROLLERS = ("pids", "memory")
V1_CPU = "cpuacct"  # optional: counts the CPU time of the whole group
HOST_GROUP = "cgr-host"  # where cgr moves itself on v2, when it must (see the module's text)
STALE_AFTER_S = 10.0  # an empty group this old whose maker is gone is a killed run's leftover


@dataclass(frozen=True)
class Hierarchy:
    """Where program groups are made: v1, one folder per controller (pids, memory, then
    cpuacct where mounted); v2, one."""

    version: int
    roots: tuple[Path, ...]

    @property
    def memory_root(self) -> Path:
        return self.roots[1] if self.version == 1 else self.roots[0]


def _unescape(path: str) -> str:
    """mountinfo writes spaces, tabs, newlines and backslashes as octal escapes."""
    for code in ("040", "011", "012", "134"):
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fs type, super options) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((_unescape(fields[3]), _unescape(fields[4]), rest[0],
                      set(rest[2].split(","))))
    return found


def _inside(mount_root: str, mount_point: str, path: str) -> Path | None:
    """The folder of cgroup ``path`` under a mount of the hierarchy's ``mount_root``."""
    root = mount_root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None  # the group lies outside what this mount shows
    return Path(mount_point) / path[len(root):].lstrip("/")


def _v1_folder(mounts: list[tuple[str, str, str, set[str]]], v1: dict[str, str],
               controller: str) -> Path | None:
    for root, point, kind, options in mounts:
        if kind == "cgroup" and controller in options and controller in v1:
            folder = _inside(root, point, v1[controller])
            if folder is not None:
                return folder
    return None


def find_hierarchy(proc_cgroup: str, mountinfo: str) -> Hierarchy | str:
    """Where this process's program groups go, from the two files' text; or why nowhere."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if number == "0" and names == "":
            v2 = path
        for name in names.split(","):
            v1[name] = path
    mounts = _mounts(mountinfo)
    folders = [_v1_folder(mounts, v1, controller) for controller in V1_CONTROLLERS]
    if all(folders):
        cpu = _v1_folder(mounts, v1, V1_CPU)
        return Hierarchy(1, tuple(folder for folder in (*folders, cpu) if folder is not None))
    if v2 is not None:
        for root, point, kind, _ in mounts:
            if kind == "cgroup2":
                folder = _inside(root, point, v2)
                if folder is not None:
                    return Hierarchy(2, (folder,))
    return "neither cgroup-v1 pids and memory hierarchies nor a cgroup-v2 hierarchy is mounted"


def _delegate_v2(folder: Path) -> None:
    """Make ``folder``'s children get the memory and pids controllers (OSError if not)."""
    wanted = {"memory", "pids"}
    available = set((folder / "cgroup.controllers").read_text().split())
    if not wanted <= available:
        raise OSError(f"cgroup v2: {folder} has no {' or '.join(sorted(wanted - available))} "
                      f"controller to share (its cgroup.controllers: "
                      f"{' '.join(sorted(available)) or 'none'}); delegate them to cgr's cgroup")
    control = folder / "cgroup.subtree_control"
    if wanted <= set(control.read_text().split()):
        return
    try:
        control.write_text("+memory +pids")
        return
    except OSError as err:
        others = set((folder / "cgroup.procs").read_text().split()) - {str(os.getpid())}
        if others:
            raise OSError(f"cgroup v2: cannot share the memory and pids controllers of "
                          f"{folder} ({err.strerror}): other processes live in it; run cgr in "
                          "a cgroup of its own (e.g. systemd-run --scope -p Delegate=yes)"
                          ) from err
    host = folder / HOST_GROUP
    host.mkdir(exist_ok=True)
    (host / "cgroup.procs").write_text(str(os.getpid()))  # the whole process, every thread
    log.info("cgroup v2: moved cgr into %s so that %s can share its controllers", host, folder)
    control.write_text("+memory +pids")


@lru_cache(maxsize=1)
def hierarchy() -> Hierarchy | str:
    """This process's hierarchy (looked up, and on v2 prepared, once); or why there is none."""
    try:
        found = find_hierarchy(Path("/proc/self/cgroup").read_text(),
                               Path("/proc/self/mountinfo").read_text())
        if isinstance(found, Hierarchy) and found.version == 2:
            _delegate_v2(found.roots[0])
    except OSError as err:
        return str(err)
    return found


class Cgroup:
    """One program's group: its folders (one per hierarchy root), created empty."""

    def __init__(self) -> None:
        self.dirs: list[Path] = []
        self.applied: tuple[int, int] | None = None

    def set_limits(self, limits: SandboxLimits) -> None:
        wanted = (limits.processes, limits.memory_bytes)
        if wanted != self.applied:
            self._write_limits(limits)
            self.applied = wanted

    def _write_limits(self, limits: SandboxLimits) -> None:
        raise NotImplementedError

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group at its memory cap."""
        raise NotImplementedError

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process the group ever held (None: not counted here)."""
        return None

    def add(self, pid: int) -> None:
        for folder in self.dirs:
            (folder / "cgroup.procs").write_text(str(pid))

    def members(self) -> list[int]:
        """The processes in the group (all of them are in every folder of it)."""
        try:
            return [int(pid) for pid in (self.dirs[0] / "cgroup.procs").read_text().split()]
        except (OSError, IndexError):
            return [-1]  # unknown: not provably empty

    def contains(self, pid: int) -> bool:
        return all(str(pid) in (folder / "cgroup.procs").read_text().split()
                   for folder in self.dirs)

    def kill(self) -> None:
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove_now(self) -> bool:
        """One try, without waiting: True once the group is gone; kills what is still in it."""
        for folder in list(self.dirs):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                self.kill()
                return False
            self.dirs.remove(folder)
        return True

    def remove(self) -> None:
        for folder in self.dirs:
            pause = 0.0005
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(pause)
                    pause = min(2 * pause, 0.02)


def _counter(path: Path, key: str) -> int:
    """A ``key value`` line's value in a cgroup file (0 when absent)."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                with contextlib.suppress(ValueError):
                    return int(value)
    return 0


class CgroupV1(Cgroup):
    """A pids group and a memory group of the same name."""

    def _write_limits(self, limits: SandboxLimits) -> None:
        pids, memory = self.dirs[:2]
        (pids / "pids.max").write_text(str(limits.processes))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # memsw may not be lowered below the limit, nor the limit above it
            current = int((memory / "memory.limit_in_bytes").read_text())
            order = [memory / "memory.limit_in_bytes", swap]
            for path in order if limits.memory_bytes < current else order[::-1]:
                path.write_text(str(limits.memory_bytes))
        else:
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))

    def oom_killed(self) -> bool:
        return any(_counter(folder / "memory.oom_control", "oom_kill") > 0
                   for folder in self.dirs[1:2])

    def cpu_seconds(self) -> float | None:
        if len(self.dirs) < 3:
            return None
        try:
            return int((self.dirs[2] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None


class CgroupV2(Cgroup):
    """One group of the unified hierarchy."""

    def _write_limits(self, limits: SandboxLimits) -> None:
        (folder,) = self.dirs
        (folder / "pids.max").write_text(str(limits.processes))
        (folder / "memory.max").write_text(str(limits.memory_bytes))
        with contextlib.suppress(OSError):  # absent without swap accounting
            (folder / "memory.swap.max").write_text("0")

    def oom_killed(self) -> bool:
        return any(_counter(folder / "memory.events", "oom_kill") > 0 for folder in self.dirs)

    def cpu_seconds(self) -> float | None:
        if not self.dirs or not (self.dirs[0] / "cpu.stat").exists():
            return None
        return _counter(self.dirs[0] / "cpu.stat", "usage_usec") / 1e6

    def kill(self) -> None:
        """``cgroup.kill`` (Linux 5.14+) kills every process at once, none can fork away."""
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                (folder / "cgroup.kill").write_text("1")
        super().kill()


def new_cgroup(limits: SandboxLimits) -> Cgroup:
    """A fresh group for one program, capped at ``limits``; OSError where none can be made."""
    where = hierarchy()
    if isinstance(where, str):
        raise OSError(where)
    group = CgroupV1() if where.version == 1 else CgroupV2()
    name = f"cgr-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # its maker, for the sweep
    try:
        for number, root in enumerate(where.roots):
            try:
                (root / name).mkdir()
            except OSError as err:
                if number < 2 or where.version != 1:
                    raise
                _no_cpu_account(root, err)  # v1 cpuacct is optional: the rlimits still hold
                break
            group.dirs.append(root / name)
        group.set_limits(limits)
    except OSError:
        group.remove()
        raise
    return group


_UNCOUNTED: set[Path] = set()  # cpuacct roots already warned about


def _no_cpu_account(root: Path, err: OSError) -> None:
    if root in _UNCOUNTED:
        return
    _UNCOUNTED.add(root)
    log.warning("cgroup v1: no CPU account for programs (cannot make a group in %s: %s); "
                "CPU is limited per process only", root, err.strerror or err)


def _stale(folder: Path, now: float) -> bool:
    """Empty, older than STALE_AFTER_S, and its maker (the pid in its name) no longer runs.

    Another cgr process (a second rank, a second run) makes groups in the same place, and a
    group is empty from its mkdir until its program starts: only the maker may remove it
    then. The age floor covers makers in another PID namespace, whose pid means nothing here.
    """
    try:
        if (folder / "cgroup.procs").read_text().strip():
            return False
        if now - folder.stat().st_mtime < STALE_AFTER_S:
            return False
    except OSError:
        return False
    maker = folder.name.split("-")[1]
    if maker.isdigit() and int(maker) != os.getpid():
        try:
            os.kill(int(maker), 0)
            return False  # its maker still runs
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return not maker.isdigit()  # a name without a maker: 0.1's groups


def sweep_stale_cgroups() -> None:
    """Remove groups left by a killed run (see ``_stale``; rmdir fails on one in use)."""
    where = hierarchy()
    if isinstance(where, str):
        return
    now = time.time()
    for root in where.roots:
        with contextlib.suppress(OSError):
            for folder in root.glob("cgr-*"):
                if folder.name != HOST_GROUP and _stale(folder, now):
                    with contextlib.suppress(OSError):
                        folder.rmdir()


@lru_cache(maxsize=1)
def cgroup_problem() -> str | None:
    """None when program groups work here (one is made and removed, once), else why not."""
    sweep_stale_cgroups()
    try:
        group = new_cgroup(SandboxLimits())
    except OSError as err:
        return str(err)
    group.remove()
    return None
