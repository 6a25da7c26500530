"""Where and on what a run was measured: package versions, git commit, machine, memory, and contention.

Absolute seconds mean something only on a machine that was not busy with other work. Every run therefore
takes a ``Reading`` (the 1-minute load average and a short fp32 matmul-rate measurement) before its own work
starts and another after it ends, and ``contention`` turns the two into a verdict:

- **busy at the start**: the 1-minute load average before the run's own work, per CPU, is above
  ``LOAD_PER_CPU`` (0.5: on 2 CPUs, a load above 1.0 means about one other process was running flat out);
- **slowed down**: the matmul rate at the end is below ``RATE_KEPT`` (0.75) of the rate at the start. Both are
  measured while the run itself is idle, so a drop means something else took the cores during the run.

Either one marks the run ``contended`` (results.json: ``contended`` and ``contention``, one reason each) and
the runner warns on stderr: its latency and write-time figures are confounded, its accuracy figures stand.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VERSIONED = ("torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu", "loramem")
LOAD_PER_CPU = 0.5  # 1-min load average per CPU above which the machine was busy before the run started
RATE_KEPT = 0.75  # the end matmul rate must keep at least this share of the start rate
MATMUL_SECONDS = 0.5  # each matmul-rate measurement: short, the run pays it twice


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """The commit this run measured and whether the working tree had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_info(matmul_gflops: float) -> dict[str, Any]:
    """The machine, with the matmul rate measured at the start of the run (``Reading.matmul_gflops``)."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": round(matmul_gflops, 1),
    }


# --- contention -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """How busy the machine looked at one moment: the 1-min load average (None where the OS has none) and
    the fp32 matmul rate measured then (GFLOP/s, ``loramem.demo.measure_matmul``)."""

    at: str
    load_1m: float | None
    matmul_gflops: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def take_reading(matmul_seconds: float = MATMUL_SECONDS) -> Reading:
    """The load average first (before the matmul measurement adds to it), then the matmul rate."""
    from loramem.demo import measure_matmul

    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    rate = measure_matmul(seconds=matmul_seconds)
    return Reading(at=now(), load_1m=load, matmul_gflops=round(rate, 1))


def contention(start: Reading, end: Reading | None, cpus: int | None) -> list[str]:
    """Why the run was likely measured beside another heavy process (empty: no sign of it). See the module
    docstring for the rule."""
    reasons = []
    cpus = max(1, cpus or 1)
    if start.load_1m is not None and start.load_1m / cpus > LOAD_PER_CPU:
        reasons.append(f"load average {start.load_1m:.2f} on {cpus} CPU(s) before the run started "
                       f"(above {LOAD_PER_CPU} per CPU): other processes were running")
    if end is not None and end.matmul_gflops < RATE_KEPT * start.matmul_gflops:
        reasons.append(f"the fp32 matmul rate fell from {start.matmul_gflops:.1f} GFLOP/s at the start to "
                       f"{end.matmul_gflops:.1f} at the end (below {RATE_KEPT:.0%} of the start): "
                       f"something else took the cores during the run")
    return reasons


# --- memory ---------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb()


def maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


class PeakRSS:
    """Peak resident memory (MB) while a block runs: VmRSS sampled every ``interval`` s by a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self) -> PeakRSS:
        self.peak_mb = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


class Timer:
    """Wall seconds and peak resident memory of a block: ``with Timer() as t: ...; t.seconds, t.peak_mb``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.peak_mb = 0.0
        self._rss = PeakRSS()
        self._t0 = 0.0

    def __enter__(self) -> Timer:
        self._rss.__enter__()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._rss.__exit__(*exc)
        self.peak_mb = self._rss.peak_mb
