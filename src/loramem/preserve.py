"""Preservation prompts: what an edit must leave alone, and whether the base model already knows a fact.

A write that changes one fact should not change what the model says about its neighbours. The write loop
(``loramem.train``) adds lambda x KL(base || adapted) on the prompts built here:

- **neighbours**: for each written fact, other subjects' questions of the same relation. They come from the
  namespace's items that this module does not train (their own canonical questions), then, when there are
  too few, from generated look-alike subjects of the same shape ("Dr. Alma Vance" -> "Dr. Kira Moravec");
- **given**: prompts the caller passes (``write(..., preserve=[...])``, e.g. CounterFact's neighbour prompts);
- **generic**: a small fixed set of everyday questions, so the module keeps the base model's manners.

A prompt that is also a training question of the module is dropped: CE and KL would pull it both ways.
``known`` decides whether a fact overwrites base knowledge, from the base model's greedy answer.
Layer 2: plain items and a model in, prompts and flags out.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from .devices import model_device
from .phonebook import FIRST, LAST, TITLES
from .prompts import PromptFormat
from .types import Fact, Item

GENERIC_PROMPTS: tuple[str, ...] = (
    "How are you today?",
    "What is two plus three?",
    "How many days are there in a week?",
    "What colour is the sky on a clear day?",
    "Give me a synonym for happy.",
    "Name a fruit that is yellow.",
    "Write one sentence about dogs.",
    "What do people usually eat for breakfast?",
)


def lookalike(subject: str, rng: random.Random) -> str:
    """A made-up subject of the same shape: titles kept, capitalised words swapped for invented names,
    digits for other digits, everything else kept (so the question reads like the real one)."""
    words, out, named = subject.split(" "), [], 0
    for w in words:
        if w in TITLES or not w:
            out.append(w)
        elif w[0].isupper():
            out.append(rng.choice(FIRST if named == 0 else LAST))
            named += 1
        else:
            out.append(re.sub(r"\d", lambda _: str(rng.randint(0, 9)), w))
    text = " ".join(out)
    return text if text != subject else f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def ask_about(fact: Fact, subject: str) -> str:
    """``fact``'s question, asked about another subject (its template, else its text with the subject swapped)."""
    if fact.question and "{subject}" in fact.question:
        return Fact(subject, fact.relation, fact.object, question=fact.question).canonical_question
    question = fact.canonical_question
    if fact.subject in question:
        return question.replace(fact.subject, subject)
    return f"What is the {fact.relation} of {subject}?"


def neighbour_prompts(written: Sequence[Item], others: Iterable[Item], per_fact: int, seed: int = 0,
                      trained_subjects: Iterable[str] = ()) -> list[str]:
    """Up to ``per_fact`` questions per written fact about other subjects of its relation.

    ``others``: items of the namespace this module does not train (their subjects are real neighbours).
    Subjects the module trains on (``written`` and ``trained_subjects``) are never used: it is meant to change
    what it says about them.
    """
    facts = [it for it in written if isinstance(it, Fact)]
    taken = {f.subject for f in facts} | set(trained_subjects)
    by_relation: dict[str, list[Fact]] = {}
    for it in others:
        if isinstance(it, Fact) and it.subject not in taken:
            by_relation.setdefault(it.relation, []).append(it)
    out: list[str] = []
    for f in facts:
        rng = random.Random(f"{seed}:{f.id}")
        pool = by_relation.get(f.relation, [])
        picked = [o.canonical_question for o in rng.sample(pool, min(per_fact, len(pool)))]
        tries = 0
        while len(picked) < per_fact and tries < 10 * per_fact:  # no held neighbours: look-alikes
            tries += 1
            other = lookalike(f.subject, rng)
            if other not in taken:
                picked.append(ask_about(f, other))
        out += picked
    return out


def preservation_prompts(
    written: Sequence[Item], others: Iterable[Item], given: Sequence[str], train_prompts: Iterable[str | None],
    per_fact: int, seed: int = 0, trained_subjects: Iterable[str] = (),
) -> list[str]:
    """Given prompts, then neighbours, then the generic ones; deduplicated, minus the module's own questions."""
    own = {p.strip() for p in train_prompts if p}
    out: list[str] = []
    neighbours = neighbour_prompts(written, others, per_fact, seed, trained_subjects)
    for p in [*given, *neighbours, *GENERIC_PROMPTS]:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"preserve: expected non-empty prompt strings, got {p!r}")
        if p.strip() not in own and p not in out:
            out.append(p)
    return out


@torch.no_grad()
def greedy(model: Any, prompt: PromptFormat, questions: Sequence[str], max_new: int,
           batch_size: int = 32) -> list[tuple[list[int], list[int], list[float]]]:
    """Per question: (prompt ids, the greedy continuation's ids, each one's log-probability).

    The continuation stops after the end-of-turn token (kept: where the model stops is part of its behaviour).
    Whichever adapter is active answers; callers disable it to ask the base model.
    """
    tok = prompt.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stops = set(prompt.end_ids[:1]) | ({tok.eos_token_id} if tok.eos_token_id is not None else set())
    encoded = [tok(prompt.prompt(q), add_special_tokens=False)["input_ids"] for q in questions]
    out: list[tuple[list[int], list[int], list[float]]] = []
    for s in range(0, len(encoded), batch_size):
        chunk = encoded[s : s + batch_size]
        width = max(len(e) for e in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):  # left padding: every prompt ends at the same column
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        device = model_device(model)
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new,
                             do_sample=False, pad_token_id=pad, output_scores=True, return_dict_in_generate=True)
        new = gen.sequences[:, width:]  # [B, T]
        logp = torch.stack([torch.log_softmax(x.float(), -1) for x in gen.scores], 1)  # [B, T, V]
        token_logp = logp.gather(-1, new[..., None])[..., 0]  # [B, T]
        for row, e in enumerate(chunk):
            cont = new[row].tolist()
            n = next((i + 1 for i, t in enumerate(cont) if t in stops), len(cont))
            out.append((e, cont[:n], token_logp[row, :n].tolist()))
    return out


def known(model: Any, prompt: PromptFormat, facts: Sequence[Fact], min_logprob: float, max_new: int) -> list[bool]:
    """Per fact: does the base model already have an answer it is sure of? (run with the adapter disabled)

    The rule: every token of its greedy answer to the canonical question (up to ``max_new`` tokens) has
    log-probability >= ``min_logprob``. An answer it makes up has at least one unsure token (a name, a digit);
    a fact it knows is said with confidence throughout ("The capital of France is Paris."). Cheap (one
    batched generation) and noisy fact by fact, so writes decide on the share of known facts.
    """
    answers = greedy(model, prompt, [f.canonical_question for f in facts], max_new)
    return [bool(lp) and min(lp) >= min_logprob for _, _, lp in answers]
