"""Shared fixtures: one tiny random Llama-style model per session, built in-process (no downloads)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from tiny import build_tiny  # noqa: E402

from loramem import KnowledgeMemory, LoraSpec, SynthConfig, TrainConfig  # noqa: E402

# The tiny model is far faster on one thread (no OpenMP hand-offs), and one thread does not fight other jobs.
torch.set_num_threads(1)

FAST_TRAIN = TrainConfig(lr=5e-3, lora_plus_ratio=1.0, max_steps=500, progress=False, seq_len=128, batch_tokens=256, min_epochs=1)
FAST_LORA = LoraSpec(r=8)
# A lighter context mix (one gold context per fact, 2 distractors, no distractor-only copy): every write still
# goes through context-mixed synthesis, at a third of the default's extra examples. tests/test_context_mix.py
# checks the default mix itself.
FAST_SYNTH = SynthConfig(context_questions=1, distractor_share=0.0, min_distractors=2, max_distractors=2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture, different weights: a different base model for fingerprint checks."""
    return build_tiny(tmp_path_factory.mktemp("tiny2") / "model", seed=1)


@pytest.fixture
def mem(tmp_path: Path, tiny_model_dir: Path) -> KnowledgeMemory:
    m = KnowledgeMemory.open(tmp_path / "store", model=str(tiny_model_dir), train=FAST_TRAIN, lora=FAST_LORA,
                             synth=FAST_SYNTH)
    yield m
    m.close()


NAMES = ["Alma", "Bram", "Cora", "Dorin", "Elsa", "Fenn"]
COLOURS = ["blue", "red", "green", "yellow", "purple", "orange"]


@pytest.fixture
def facts():  # type: ignore[no-untyped-def]
    from loramem import Fact

    return [Fact(n, "favourite colour", c) for n, c in zip(NAMES, COLOURS)]
