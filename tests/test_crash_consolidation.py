"""kill -9 of a consolidating process at 20 random points: after each, every remembered item is pending or held
by a committed version (never both, never neither), every committed version loads, and consolidation goes on."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NAMES

from loramem import Fact, KnowledgeMemory

WRITER = Path(__file__).with_name("crash_writer.py")


def _spawn(store: Path, model: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WRITER.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(WRITER), str(store), str(model)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    return proc


def _check(store: Path, model: Path, remembered: set[str]) -> tuple[int, int]:
    mem = KnowledgeMemory.open(store, model=str(model))
    try:
        pending = [p.id for p in mem.pending("people")]
        held_by_versions: list[str] = []
        for info in mem.ls("people"):
            mem.load_module(info)  # every committed version loads (sha256 checked against the manifest)
            held_by_versions += mem.store.module_items(info.module_id, info.version)
        assert len(pending) == len(set(pending)) and len(held_by_versions) == len(set(held_by_versions))
        assert not set(pending) & set(held_by_versions), "an item is both pending and consolidated"
        assert set(pending) | set(held_by_versions) == remembered, "a remembered item was lost"
        return len(pending), len(held_by_versions)
    finally:
        mem.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:module people:RuntimeWarning")  # 44 facts on the tiny model: recall is not the point
def test_kill_9_at_20_random_points_of_a_consolidation_loses_nothing(tmp_path, tiny_model_dir):
    store, rng = tmp_path / "store", random.Random(7)
    facts = [Fact(f"{NAMES[i % 6]} {i}", "favourite number", str(100 + i)) for i in range(44)]
    remembered: set[str] = set()
    mem = KnowledgeMemory.open(store, model=str(tiny_model_dir))
    remembered |= set(mem.remember(facts[:4], namespace="people"))
    mem.close()
    t0 = time.perf_counter()  # one unkilled consolidation: how long the window to kill in is
    proc = _spawn(store, tiny_model_dir)
    assert proc.wait(timeout=300) == 0
    window = time.perf_counter() - t0
    kills = 0
    for i in range(20):
        mem = KnowledgeMemory.open(store, model=str(tiny_model_dir))
        remembered |= set(mem.remember(facts[4 + 2 * i : 6 + 2 * i], namespace="people"))
        mem.close()
        proc = _spawn(store, tiny_model_dir)
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        _check(store, tiny_model_dir, remembered)
    assert kills >= 10, f"only {kills} of 20 runs were killed mid-consolidation"
    # The next consolidation completes, and takes everything left in the buffer.
    mem = KnowledgeMemory.open(store, model=str(tiny_model_dir))
    mem.consolidate()
    mem.close()
    assert _check(store, tiny_model_dir, remembered) == (0, len(remembered))
