"""Measuring processes: CPU-seconds from the kernel's accounting of ended processes (``wait4``), wall time,
peak memory of a process tree, and how busy the machine was with other people's work meanwhile.

CPU-seconds are the primary figure: the kernel charges a process the CPU of every descendant it waited for,
so ``wait4`` on a command gives the CPU of its whole tree (submitit's controller and task processes,
BirdNET's extraction pool), and other users' load on a shared machine does not inflate it (much).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU-seconds the machine spent busy since boot (all cores; idle and iowait excluded), less what this
    harness process itself used: what remains beside a measured command is other people's load."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    own = resource.getrusage(resource.RUSAGE_SELF)
    return (sum(values) - values[3] - values[4]) / TICKS - own.ru_utime - own.ru_stime


@dataclass
class Measured:
    """One command: exit code, wall seconds, CPU-seconds of its whole tree, its largest process's peak RSS."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    user_s: float
    system_s: float
    max_rss_mb: float  # largest single process of the tree (kernel's ru_maxrss)
    foreign_cpu_s: float = 0.0  # CPU-seconds other processes used on this machine meanwhile
    tree_peak_rss_mb: float | None = None  # sampled: sum over the tree's processes (shared pages counted twice)
    tree_peak_pss_mb: float | None = None  # sampled: sum of proportional set sizes (what a cgroup roughly sees)
    tree_peak_processes: int | None = None
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)

    def as_dict(self) -> dict:
        found = asdict(self)
        found.pop("stdout")
        found.pop("stderr")
        return found


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(root: int) -> list[int]:
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory(pid: int) -> tuple[int, int]:
    """(rss, pss) in bytes, (0, 0) when the process is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        return rss, pss
    except (OSError, ValueError, IndexError):
        return 0, 0


class TreeSampler:
    """Samples the summed RSS and PSS of a process tree every ``interval`` seconds in a thread."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.root)
            sizes = [_memory(pid) for pid in pids]
            self.peak_rss = max(self.peak_rss, sum(s[0] for s in sizes))
            self.peak_pss = max(self.peak_pss, sum(s[1] for s in sizes))
            self.peak_processes = max(self.peak_processes, sum(1 for s in sizes if s[0]))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _measured(command, status, usage, wall, foreign, stdout="", stderr="") -> Measured:
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(list(map(str, command)), os.waitstatus_to_exitcode(status), wall, cpu, usage.ru_utime,
                    usage.ru_stime, usage.ru_maxrss / 1024, max(0.0, foreign), stdout=stdout, stderr=stderr)


def run(command: Sequence, env: dict | None = None, cwd: Path | None = None, memory: bool = False,
        capture: bool = False, log: Path | None = None, check: bool = True, interval: float = 0.1) -> Measured:
    """Run ``command`` to its end and measure it (its whole process tree). Output goes to ``log``, or is
    captured (``capture``), or is dropped."""
    if capture:
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    elif log:
        out = open(log, "ab")
        err = subprocess.STDOUT
    else:
        out = err = subprocess.DEVNULL
    started, busy = time.perf_counter(), system_busy_seconds()
    proc = subprocess.Popen(list(map(str, command)), env=env, cwd=cwd, stdout=out, stderr=err)
    sampler = TreeSampler(proc.pid, interval) if memory else None
    if sampler:
        sampler.__enter__()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if sampler:
            sampler.__exit__()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = stderr = ""
    if capture:
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        out.close()
        err.close()
    elif log:
        out.close()
    result = _measured(command, status, usage, wall, 0.0, stdout, stderr)
    result.foreign_cpu_s = max(0.0, system_busy_seconds() - busy - result.cpu_s)
    if sampler:
        result.tree_peak_rss_mb = sampler.peak_rss / 2**20
        result.tree_peak_pss_mb = sampler.peak_pss / 2**20
        result.tree_peak_processes = sampler.peak_processes
    if check and result.returncode != 0:
        raise RuntimeError(f"command failed ({result.returncode}): {' '.join(result.command)}\n"
                           f"{stderr[-3000:]}" + (f"\nlog: {log}" if log else ""))
    return result


@dataclass
class Batch:
    """Commands run with at most ``slots`` at a time (like an array job on a node with that many slots)."""

    measured: list[Measured]
    wall_s: float
    foreign_cpu_s: float

    @property
    def cpu_s(self) -> float:
        return sum(m.cpu_s for m in self.measured)


def run_batch(commands: list[Sequence], slots: int, env: dict | None = None, cwd: Path | None = None,
              logs: list[Path] | None = None, progress=None) -> Batch:
    """Run every command, ``slots`` at a time; each one measured on its own by ``wait4``."""
    started, busy = time.perf_counter(), system_busy_seconds()
    todo = list(enumerate(commands))
    running: dict[int, tuple[int, subprocess.Popen, float, object]] = {}
    done: dict[int, Measured] = {}
    while todo or running:
        while todo and len(running) < slots:
            k, command = todo.pop(0)
            out = open(logs[k], "ab") if logs else subprocess.DEVNULL
            proc = subprocess.Popen(list(map(str, command)), env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT if logs else subprocess.DEVNULL)
            running[proc.pid] = (k, proc, time.perf_counter(), out)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        k, proc, begun, out = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if logs:
            out.close()
        done[k] = _measured(commands[k], status, usage, time.perf_counter() - begun, 0.0)
        if done[k].returncode != 0:
            raise RuntimeError(f"command failed ({done[k].returncode}): {' '.join(map(str, commands[k]))}"
                               + (f"; log {logs[k]}" if logs else ""))
        if progress:
            progress(len(done), len(commands))
    wall = time.perf_counter() - started
    measured = [done[k] for k in range(len(commands))]
    foreign = max(0.0, system_busy_seconds() - busy - sum(m.cpu_s for m in measured))
    return Batch(measured, wall, foreign)


def repeat(command: Sequence, times: int, before: Callable[[], None] | None = None, **kwargs) -> dict:
    """Median, min and max wall and CPU over ``times`` runs of a short command (plus every sample);
    ``before`` runs ahead of each one, outside the measurement."""
    samples = []
    for _ in range(times):
        if before is not None:
            before()
        samples.append(run(command, **kwargs))
    walls, cpus = [m.wall_s for m in samples], [m.cpu_s for m in samples]
    return {
        "command": samples[0].command, "runs": times,
        "wall_median_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
        "cpu_median_s": statistics.median(cpus), "cpu_min_s": min(cpus), "cpu_max_s": max(cpus),
        "max_rss_mb": max(m.max_rss_mb for m in samples),
        "foreign_cpu_s": sum(m.foreign_cpu_s for m in samples),
        "wall_samples_s": [round(w, 4) for w in walls], "cpu_samples_s": [round(c, 4) for c in cpus],
    }
