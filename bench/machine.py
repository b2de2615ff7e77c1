"""The machine a browser benchmark runs on, and the rule browser_bench.py and load_bench.py measure by.

- machine_env(): CPU count and model, platform and git state for a report's environment;
- PssSampler: peak PSS of this process's Chromium descendants and the CPU cores OTHER processes
  kept busy meanwhile (from /proc);
- quiet_run(): wait (at most --wait-idle s) for idle CPUs before a run, and run it again (at most
  --retries times) when other processes used more than --max-other-busy cores during it; the
  flags come from add_quiet_args();
- write_json(): a report with the command line that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


def git_state() -> str | None:
    """HEAD and whether the files the bundle and web/dist come from have local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "webllm_py", "wgsl_templates", "web/src"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + (" + local changes" if dirty else "")


def machine_env() -> dict[str, Any]:
    """cpu_count, cpu (its model name), platform and git (git_state()) of a report's environment."""
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo.read_text().splitlines() if l.startswith("model name")),
               platform.processor()) if cpuinfo.exists() else platform.processor()
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "git": git_state()}


# ---- memory and CPU time of the Chromium processes ----------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _chromium_pids() -> list[int]:
    """Descendants of this process whose command is Chromium."""
    kids, out, todo = _children(), [], [os.getpid()]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            todo.append(c)
            try:
                exe = os.readlink(f"/proc/{c}/exe")
            except OSError:
                continue
            if "chrom" in exe:
                out.append(c)
    return out


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int | str) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _total_busy_ticks() -> int:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(f) - f[3] - (f[4] if len(f) > 4 else 0)


class PssSampler:
    """Peak of the summed PSS of this process's Chromium descendants, sampled every 0.2 s;
    also the CPU cores that OTHER processes kept busy meanwhile (other_busy_cores)."""

    def __init__(self, period: float = 0.2):
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._ticks: dict[int, int] = {}  # last CPU ticks seen per Chromium pid
        self.other_busy_cores: float | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pids = _chromium_pids()
                self.peak = max(self.peak, sum(_pss_kib(p) for p in pids))
                for p in pids:
                    self._ticks[p] = max(self._ticks.get(p, 0), _cpu_ticks(p))
            except Exception:  # a process vanishing mid-walk
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> "PssSampler":
        if Path("/proc/self/smaps_rollup").exists():
            self._t0, self._busy0, self._self0 = time.monotonic(), _total_busy_ticks(), _cpu_ticks("self")
            self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._t.is_alive():
            self._t.join()
            hz = os.sysconf("SC_CLK_TCK")
            mine = sum(self._ticks.values()) + _cpu_ticks("self") - self._self0  # children reaped late are missed
            other = _total_busy_ticks() - self._busy0 - mine
            self.other_busy_cores = max(0.0, other / hz / max(1e-9, time.monotonic() - self._t0))


def busy_cores(seconds: float = 2.0) -> float:
    """CPU cores busy over `seconds` (all processes; call it while this benchmark is idle)."""
    def snap() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return sum(f), idle
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return 0.0
    return (1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1)


def wait_idle(limit_s: float, threshold: float = 0.3) -> float:
    """Wait (at most limit_s) until other processes use < threshold cores; returns the last reading."""
    deadline = time.monotonic() + limit_s
    busy = busy_cores()
    announced = False
    while busy >= threshold and time.monotonic() < deadline:
        if not announced:
            print(f"  machine busy ({busy:.1f} cores used by other processes): waiting up to {limit_s:.0f} s", flush=True)
            announced = True
        time.sleep(3)
        busy = busy_cores()
    return busy



# ---- runs other processes did not disturb -------------------------------------------------------


def add_quiet_args(ap: argparse.ArgumentParser, unit: str, wait_idle_s: float) -> None:
    """--wait-idle, --max-other-busy and --retries (quiet_run's), `unit` naming what one run is."""
    ap.add_argument("--wait-idle", type=float, default=wait_idle_s,
                    help=f"before each {unit}, wait up to this many seconds for other processes to leave the CPUs idle "
                         f"(< 0.3 cores busy); every {unit} records what it saw (busy_cores_before)")
    ap.add_argument("--max-other-busy", type=float, default=0.3,
                    help=f"a {unit} during which other processes used more CPU cores than this is run again")
    ap.add_argument("--retries", type=int, default=2, help=f"re-runs allowed per {unit} (see --max-other-busy)")


def quiet_run(run: Callable[[], dict[str, Any]], a: argparse.Namespace, discard: Callable[[dict[str, Any]], None],
              what: str) -> dict[str, Any]:
    """run() (its result has other_busy_cores, from PssSampler) after waiting for idle CPUs; run
    again, at most a.retries times, while other processes used more than a.max_other_busy cores
    during it. Each disturbed result goes to discard() (the reports keep them); `what` names the
    run in the message, e.g. "the run of webllm"."""
    for attempt in range(1 + a.retries):
        busy = wait_idle(a.wait_idle)
        r = run()
        r["busy_cores_before"] = busy
        other = r.get("other_busy_cores") or 0.0
        if other <= a.max_other_busy or attempt == a.retries:
            return r
        discard(r)
        print(f"  other processes used {other:.2f} cores during {what}: run again", flush=True)
    raise AssertionError("unreachable")


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """A report as JSON, the command line that made it first."""
    path.write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]), **doc}, indent=1))
    print(f"wrote {path}")
