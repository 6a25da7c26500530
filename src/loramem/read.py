"""Batched greedy generation: the read path for every reader (LoRA, base, RAG, ICL, hybrids).

Questions are sorted by prompt length so each left-padded batch wastes little, generated together, and
returned in the caller's order. Which adapter is active is the caller's business (see memory.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import ReadConfig
from .devices import autocast, model_device
from .prompts import PromptFormat


@dataclass
class Generated:
    text: str
    seconds: float  # this question's share of its batch's wall time
    input_tokens: int
    output_tokens: int
    # Mean log-likelihood per generated token (end-of-turn included) under the row's own prompt and adapter:
    # how sure the model is of this answer (the gate and module selection compare it). None unless asked for.
    logprob: float | None = None
    # The generated token ids through the first end token (what a served answer is compared by).
    token_ids: list[int] | None = None


def generate(
    model: Any,
    prompt: PromptFormat,
    questions: Sequence[str],
    config: ReadConfig,
    *,
    contexts: Sequence[str | None] | None = None,
    desc: str = "ask",
) -> list[Generated]:
    """Greedy answers to ``questions`` (optionally each with a context put before it in the prompt)."""
    texts = [prompt.prompt(q, None if contexts is None else contexts[i]) for i, q in enumerate(questions)]
    return generate_texts(model, prompt, texts, config, desc=desc)


@torch.no_grad()
def generate_texts(
    model: Any,
    prompt: PromptFormat,
    texts: Sequence[str],
    config: ReadConfig,
    *,
    stop: Sequence[str] | None = None,
    desc: str = "ask",
    adapter_names: Sequence[str] | None = None,
    scores: bool = False,
) -> list[Generated]:
    """Greedy continuations of already formatted prompts, batched; cut at end-of-turn and ``stop`` strings.

    ``adapter_names``: one peft adapter per prompt (``__base__`` for none): a mixed-adapter batch.
    ``scores``: also measure each answer's ``logprob`` during the same pass (no second forward pass).
    """
    tok = prompt.tokenizer
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    results: list[Generated] = [Generated("", 0.0, 0, 0)] * len(texts)
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
        extra: dict[str, Any] = {} if adapter_names is None else {"adapter_names": [adapter_names[i] for i in batch]}
        gen_kwargs = _generation_kwargs(prompt, config, pad)
        recorder = _ChosenLogprob() if scores else None
        if recorder is not None:
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList([recorder])
        t0 = time.perf_counter()
        device = model_device(model)
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen_kwargs, **extra)
        per_question = (time.perf_counter() - t0) / len(batch)
        for row, i in enumerate(batch):
            new_ids = out[row, width:].tolist()
            text = cut(tok.decode(new_ids, skip_special_tokens=False), prompt, tok, stop)
            n_out = len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
            stop_ids = gen_kwargs["eos_token_id"]
            lp = None if recorder is None else recorder.mean(row, new_ids, stop_ids)
            results[i] = Generated(text, per_question, len(encoded[i]), n_out, lp,
                                   new_ids[: answer_length(new_ids, stop_ids)])
    return results


class _ChosenLogprob:
    """A logits processor that records, at each step, the log-probability of the token greedy decoding picks.

    Greedy picks the arg-max of the processed scores, so that token's log-probability is the max of their
    log-softmax: [B] per step, not the [B, V] tensors ``output_scores`` would keep for the whole answer.
    Placed last in the processor list, it sees the scores the arg-max is taken over.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []  # per step: [B]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(torch.log_softmax(scores.float(), dim=-1).max(dim=-1).values)
        return scores

    def mean(self, row: int, new_ids: list[int], stop_ids: list[int]) -> float:
        """Mean over the row's answer tokens: up to and including its first end token (padding after it is
        the batch running on for other rows, not this answer)."""
        n = max(1, min(answer_length(new_ids, stop_ids), len(self.steps)))
        return float(torch.stack([self.steps[j][row] for j in range(n)]).mean())


@torch.no_grad()
def answer_logprobs(
    model: Any, tok: Any, pairs: Sequence[tuple[str, str]], batch_size: int, reduce: str = "sum",
    adapter_names: Sequence[str] | None = None,
) -> list[float]:
    """Log p(answer | prompt) for (formatted prompt, answer) pairs, batched.

    Rows are left-padded so every answer ends at the last column; the LM head then runs on the last
    ``longest answer + 1`` positions only (``logits_to_keep``), not on the whole prompt ([B, K, V], not [B, T, V]).
    """
    encoded = []
    for prompt_text, answer in pairs:
        p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer, add_special_tokens=False)["input_ids"]
        if not a_ids:
            raise ValueError(f"candidate answer {answer!r} has no tokens")
        encoded.append((p_ids, a_ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[float] = [0.0] * len(pairs)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(p) + len(a) for p, a in chunk)
        keep = max(len(a) for _, a in chunk) + 1
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (p, a) in enumerate(chunk):
            ids[row, width - len(p) - len(a) :] = torch.tensor(p + a)
            mask[row, width - len(p) - len(a) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each row's positions start at 0
        extra = {} if adapter_names is None else {"adapter_names": list(adapter_names[start : start + batch_size])}
        device = model_device(model)
        with autocast(model):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                           logits_to_keep=keep, **extra).logits.float().cpu()  # [B, keep, V]: column width-keep+i
        for row, (_, a) in enumerate(chunk):
            # answer token j sits at column width-len(a)+j and is predicted from the column before it
            idx = torch.arange(keep - len(a) - 1, keep - 1)
            token_lp = torch.log_softmax(logits[row, idx], dim=-1)[torch.arange(len(a)), torch.tensor(a)]
            value = token_lp[0] if reduce == "first" else token_lp.mean() if reduce == "mean" else token_lp.sum()
            out[start + row] = float(value)
    return out


def answer_length(ids: Sequence[int], stop_ids: Sequence[int]) -> int:
    """Tokens of a generated answer up to and including its first end token (all of them if it has none)."""
    return next((j + 1 for j, t in enumerate(ids) if t in stop_ids), len(ids))


def stop_token_ids(prompt: PromptFormat) -> list[int]:
    """The tokens greedy generation stops at: EOS, and the end-of-turn marker when it is one token."""
    tok = prompt.tokenizer
    stop_ids = [tok.eos_token_id] + ([prompt.end_ids[0]] if len(prompt.end_ids) == 1 else [])
    return list(dict.fromkeys(t for t in stop_ids if t is not None))


def _generation_kwargs(prompt: PromptFormat, config: ReadConfig, pad: int) -> dict[str, Any]:
    return {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": pad,
        "eos_token_id": stop_token_ids(prompt),
    }


def cut(text: str, prompt: PromptFormat, tok: Any, stop: Sequence[str] | None = None) -> str:
    """Cut generated text at end-of-turn, EOS/padding, or the first caller stop string."""
    text = prompt.clean(_strip_pad(text, tok))
    for s in stop or ():
        if s and s in text:
            text = text[: text.index(s)]
    return text.strip()


def stream_text(
    model: Any,
    prompt: PromptFormat,
    text: str,
    config: ReadConfig,
    stop: Sequence[str] | None = None,
    generate: Callable[..., Any] | None = None,
) -> Iterator[str]:
    """Stream the greedy continuation of one formatted prompt, piece by piece (generation runs in a thread).

    ``generate`` replaces ``model.generate`` on that thread (the memory wraps it to hold its lock).
    """
    import threading

    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    abandoned = threading.Event()

    class _Abandoned(StoppingCriteria):  # the consumer stopped reading: stop generating too
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), abandoned.is_set(), dtype=torch.bool)

    tok = prompt.tokenizer
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]], device=model_device(model))
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "streamer": streamer,
              "stopping_criteria": StoppingCriteriaList([_Abandoned()]), **_generation_kwargs(prompt, config, pad)}
    error: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                (generate or model.generate)(**kwargs)
        except BaseException as exc:  # surfaced in the caller's thread below
            error.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    markers = [m for m in [prompt.end, tok.eos_token, *(stop or ())] if m]
    hold = max(len(m) for m in markers) if markers else 0
    so_far, emitted, exhausted = "", 0, False
    try:
        for piece in streamer:
            so_far += piece
            ended = any(m in so_far for m in markers)
            clean = cut(so_far, prompt, tok, stop)
            # Hold back a tail that might still turn out to be the start of an end or stop marker.
            ready = clean if ended else clean[: max(emitted, len(clean) - hold)]
            if len(ready) > emitted:
                yield ready[emitted:]
                emitted = len(ready)
            if ended:
                break
        else:
            exhausted = True  # the streamer's end signal is consumed: draining again would wait forever
            final = cut(so_far, prompt, tok, stop)
            if len(final) > emitted:
                yield final[emitted:]
    finally:
        # Runs on normal end, on a stop marker, and when the consumer abandons the stream (GeneratorExit).
        abandoned.set()
        if not exhausted:
            for _ in streamer:  # drain so the generation thread never blocks
                pass
        thread.join()
    if error:
        raise error[0]


def _strip_pad(text: str, tok: Any) -> str:
    """Cut at the first end-of-sequence or padding token (rows that finished early are padded after it)."""
    for special in (tok.eos_token, tok.pad_token):
        if special and special in text:
            text = text[: text.index(special)]
    return text
