"""The examples in /examples run end to end on the embedded SmolLM2-135M (slow: minutes on 2 CPU cores)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_langchain_agent(tmp_path: Path) -> None:
    result = _load("langchain_agent").main(str(tmp_path / "mem"))
    assert result["pending_after"] == 0  # the new threads' answers come from the module, the buffer empty
    assert result["recall"] >= 0.75, result["fresh"]


@pytest.mark.slow
def test_langchain_lcel_hybrid(tmp_path: Path) -> None:
    scores = _load("langchain_lcel_hybrid").main(str(tmp_path / "mem"))
    assert set(scores) == {"lora", "rag", "icl", "lora+rag"}
    assert scores["lora"] >= 0.8 and scores["lora+rag"] >= 0.8, scores
