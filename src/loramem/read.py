"""Batched greedy generation: the read path for every reader (LoRA, base, RAG, ICL, hybrids).

Questions are sorted by prompt length so each left-padded batch wastes little, generated together, and
returned in the caller's order. Which adapter is active is the caller's business (see memory.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from .config import ReadConfig
from .prompts import PromptFormat


@torch.no_grad()
def generate(
    model: Any,
    prompt: PromptFormat,
    questions: Sequence[str],
    config: ReadConfig,
    *,
    contexts: Sequence[str | None] | None = None,
    desc: str = "ask",
) -> list[tuple[str, float]]:
    """Greedy answers to ``questions`` (optionally each with a context), as (text, seconds per question)."""
    tok = prompt.tokenizer
    texts = [prompt.prompt(q, None if contexts is None else contexts[i]) for i, q in enumerate(questions)]
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    results: list[tuple[str, float]] = [("", 0.0)] * len(texts)
    stop = [tok.eos_token_id] + ([prompt.end_ids[0]] if len(prompt.end_ids) == 1 else [])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    from tqdm.auto import tqdm

    batches = [order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    show = config.progress and len(batches) > 1
    for batch in tqdm(batches, desc=desc, unit="batch", disable=not show, leave=False):
        width = max(len(encoded[i]) for i in batch)
        # Left padding: every prompt ends at the same column, so generation appends in lockstep.
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            mask[row, width - n :] = 1
        t0 = time.perf_counter()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad,
            eos_token_id=list(dict.fromkeys(t for t in stop if t is not None)),
        )
        per_question = (time.perf_counter() - t0) / len(batch)
        for row, i in enumerate(batch):
            text = tok.decode(out[row, width:], skip_special_tokens=False)
            results[i] = (prompt.clean(_strip_pad(text, tok)), per_question)
    return results


def _strip_pad(text: str, tok: Any) -> str:
    """Cut at the first end-of-sequence or padding token (rows that finished early are padded after it)."""
    for special in (tok.eos_token, tok.pad_token):
        if special and special in text:
            text = text[: text.index(special)]
    return text
