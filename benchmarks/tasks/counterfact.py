"""CounterFact: overwrite facts the base model already knows with counterfactual ones, as in ROME/MEMIT.

The data is a shipped, hand-written set of well-known facts (capitals, cities of landmarks, languages,
currencies, authors, composers, painters, athletes' sports, animal classes, colours, chemical symbols, ...).
``benchmarks/data/counterfact_candidates.jsonl`` holds every written candidate; ``benchmarks/data/counterfact.jsonl``
holds those the embedded SmolLM2-135M-Instruct knows without help, each with the ``base_check`` numbers that
kept it. Rebuild the kept file with::

    python -m benchmarks.tasks.counterfact --check

A record is ``{id, subject, relation, question, true, new, paraphrases: [2], neighbours: [{question, answer}] x2}``.
``new`` is a counterfactual answer of the same type whose first token (SmolLM2 tokenizer) differs from the first
token of ``true``. Neighbourhood prompts ask the same relation about other subjects (mostly sharing the true
answer, as in CounterFact) that no record edits; their answers must not change.

The kept criterion (``CRITERION``, "greedy+main"): the base model's greedy answer to the main question mentions
the true answer, and the first token of the true answer is more likely than the first token of the new one on the
main question; true and new must start with different tokens. (The fallback "main+paraphrase" asks the
log-probability test on the main question and on at least one paraphrase.) Measured on the shipped candidates:
254 of 754 pass "greedy+main" (538 would pass "main+paraphrase"); the model knows capitals, countries of cities,
languages, continents and chemical symbols best, and none of the composers or painters. The check takes about
20 minutes on one CPU thread.

``build(size, seed)`` writes ``Fact(subject, relation, object=new, question=question)`` per record and asks:

- ``efficacy``: the main question; answers ``[new]``, candidates ``[new, true]``;
- ``paraphrase`` x2: the paraphrased questions; same answers and candidates;
- ``neighbourhood`` x2: the neighbour questions; answers ``[neighbour answer]``, candidates ``[neighbour answer, new]``.

Preservation prompts (``TaskData.preserve``, passed as ``write(..., preserve=...)``), by the ``preserve`` option:
``"held-out"`` (default): for each edit, up to two questions of the same relation from the candidate records that
the run does not edit, none of them a question the run asks (so locality is measured on prompts the KL term never
saw, as in ROME's evaluation); ``"neighbours"``: the edits' own neighbour prompts, the very questions locality is
scored on (an optimistic upper bound); ``"none"``: no prompts given (the write decides, see ``TrainConfig.kl_weight``).

``score`` is generation-based: ``correct`` when the normalised expected answer (lowercase, no accents, punctuation
or articles; a plural ``s``/``es`` allowed) is a whole-word span of the normalised answer; for efficacy and
paraphrase questions also ``old_mentioned`` (the old true answer appears), for neighbourhood questions
``new_mentioned`` (the edit leaks into a neighbour). Separately, the runner scores every question with candidates
by first-token log-probability (``lp_correct``): correct when the first candidate beats the others, i.e.
efficacy/paraphrase success = P(new) > P(true) and neighbourhood locality = P(neighbour answer) > P(new).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loramem.types import Answer, Fact

from ..metrics import normalize
from . import register_task
from .base import Question, TaskData

if TYPE_CHECKING:
    from loramem import KnowledgeMemory

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CANDIDATES = DATA_DIR / "counterfact_candidates.jsonl"
KEPT = DATA_DIR / "counterfact.jsonl"
SOURCE = "benchmarks/data/counterfact.jsonl"

#: how ``--check`` decides that the base model knows a fact (see the module docstring)
CRITERIA = {
    "greedy+main": "greedy answer mentions the true target AND p_first(true) > p_first(new) on the main question",
    "main+paraphrase": "p_first(true) > p_first(new) on the main question AND on at least one paraphrase",
}
CRITERION = "greedy+main"


# --- text ------------------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """SQuAD normalisation (lowercase, no punctuation, no articles) after dropping accents (Brasília = Brasilia)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return normalize("".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def mentions(text: str, target: str) -> bool:
    """Whether the normalised ``target`` is a whole-word span of the normalised ``text`` (plural s/es allowed)."""
    t = normalise(target)
    if not t:
        return False
    return re.search(rf"(?:^| ){re.escape(t)}(?:e?s)?(?: |$)", normalise(text)) is not None


# --- records -----------------------------------------------------------------------------------------------------


def _text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"counterfact {where}: {key!r} must be a non-empty string, got {value!r}")
    if "{" in value or "}" in value:  # Fact.question is a format template
        raise ValueError(f"counterfact {where}: {key!r} must not contain braces, got {value!r}")
    return value


def validate_record(record: Any, where: str = "record") -> dict[str, Any]:
    """Check one record's fields and types; return it. Raises ValueError naming the record and the field."""
    if not isinstance(record, dict):
        raise ValueError(f"counterfact {where}: expected a JSON object, got {record!r:.80}")
    rid = record.get("id")
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"counterfact {where}: 'id' must be a non-empty string, got {rid!r}")
    where = f"{where} {rid}"
    for key in ("subject", "relation", "question", "true", "new"):
        _text(record, key, where)
    if normalise(record["new"]) == normalise(record["true"]):
        raise ValueError(f"counterfact {where}: 'new' must differ from 'true', both are {record['true']!r}")
    paraphrases = record.get("paraphrases")
    if not isinstance(paraphrases, list) or len(paraphrases) != 2:
        raise ValueError(f"counterfact {where}: 'paraphrases' must be a list of 2 questions, got {paraphrases!r}")
    for j in range(2):
        _text({"paraphrase": paraphrases[j]}, "paraphrase", where)
    neighbours = record.get("neighbours")
    if not isinstance(neighbours, list) or len(neighbours) != 2:
        raise ValueError(f"counterfact {where}: 'neighbours' must be a list of 2 objects, got {neighbours!r}")
    for j, n in enumerate(neighbours):
        if not isinstance(n, dict):
            raise ValueError(f"counterfact {where}: neighbours[{j}] must be {{question, answer}}, got {n!r}")
        _text(n, "question", f"{where} neighbours[{j}]")
        _text(n, "answer", f"{where} neighbours[{j}]")
        if normalise(n["answer"]) == normalise(record["new"]):
            raise ValueError(f"counterfact {where}: neighbours[{j}] answer equals the new target {record['new']!r}")
    return record


def load_records(path: str | Path = KEPT) -> list[dict[str, Any]]:
    """Read and validate a counterfact JSONL file (the kept set by default); ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"counterfact: no data file at {path}; run `python -m benchmarks.tasks.counterfact --check`")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"counterfact {path.name}:{lineno}: not JSON ({exc})") from exc
            record = validate_record(raw, f"{path.name}:{lineno}")
            if record["id"] in seen:
                raise ValueError(f"counterfact {path.name}:{lineno}: duplicate id {record['id']!r}")
            seen.add(record["id"])
            records.append(record)
    return records


# --- the task ----------------------------------------------------------------------------------------------------


def fact_of(record: dict[str, Any]) -> Fact:
    """The edited fact to write into memory: the record's question, answered with the new target."""
    return Fact(subject=record["subject"], relation=record["relation"], object=record["new"],
                question=record["question"], metadata={"cf_id": record["id"], "true": record["true"]})


def questions_of(record: dict[str, Any], fact: Fact) -> list[Question]:
    """Efficacy, two paraphrases (expect the new target) and two neighbourhood questions (expect their own answers)."""
    cf_id, new, true = record["id"], record["new"], record["true"]

    def ask(suffix: str, text: str, kind: str, answer: str, other: str) -> Question:
        return Question(id=f"{cf_id}:{suffix}", text=text, answers=[answer], item_ids=[fact.id], kind=kind,
                        group="all", candidates=[answer, other],
                        meta={"cf_id": cf_id, "relation": record["relation"], "true": true, "new": new})

    out = [ask("efficacy", record["question"], "efficacy", new, true)]
    out += [ask(f"paraphrase{j}", p, "paraphrase", new, true) for j, p in enumerate(record["paraphrases"])]
    out += [ask(f"neighbour{j}", n["question"], "neighbourhood", n["answer"], new)
            for j, n in enumerate(record["neighbours"])]
    return out


PRESERVE = ("held-out", "neighbours", "none")


def preservation_prompts(records: Sequence[dict[str, Any]], asked: Sequence[Question], how: str, seed: int,
                         per_edit: int = 2) -> list[str]:
    """The prompts an edit must leave alone (see the module docstring's ``preserve`` option)."""
    if how == "none":
        return []
    if how == "neighbours":
        return list(dict.fromkeys(n["question"] for r in records for n in r["neighbours"]))
    edited = {r["subject"] for r in records}
    taken = {q.text for q in asked}
    by_relation: dict[str, list[str]] = {}
    for r in load_records(CANDIDATES):  # a superset of the kept file: true facts of the same relations
        if r["subject"] not in edited:
            for q in (r["question"], *(n["question"] for n in r["neighbours"])):
                if q not in taken:
                    by_relation.setdefault(r["relation"], []).append(q)
    rng = random.Random(seed)
    out: list[str] = []
    for r in records:
        pool = sorted(set(by_relation.get(r["relation"], [])) - set(out))
        out += rng.sample(pool, min(per_edit, len(pool)))
    return out


class CounterFactTask:
    name = "counterfact"
    primary = "correct"

    def build(self, size: int = 0, seed: int = 0, *, path: str | Path | None = None, preserve: str = "held-out",
              **options: Any) -> TaskData:
        """``size`` records picked with ``seed`` (0, or more than the file holds, means all of them), in file order."""
        if options:
            raise ValueError(f"counterfact: unknown options {sorted(options)}; it takes size, seed, path and preserve")
        if preserve not in PRESERVE:
            raise ValueError(f"counterfact: preserve: expected one of {list(PRESERVE)}, got {preserve!r}")
        if size < 0:
            raise ValueError(f"counterfact: expected size >= 0 facts (0 = all), got {size}")
        records = load_records(path if path is not None else KEPT)
        if 0 < size < len(records):
            picked = sorted(random.Random(seed).sample(range(len(records)), size))
            records = [records[i] for i in picked]
        facts = [fact_of(r) for r in records]
        questions = [q for r, f in zip(records, facts) for q in questions_of(r, f)]
        prompts = preservation_prompts(records, questions, preserve, seed)
        meta = {"facts": len(facts), "seed": seed, "source": SOURCE if path is None else str(path),
                "preserve": preserve, "preserve_prompts": len(prompts)}
        return TaskData(self.name, list(facts), questions, {"all": [f.id for f in facts]}, meta, prompts)

    def score(self, question: Question, answer: Answer) -> dict[str, float]:
        out = {"correct": float(mentions(answer.text, question.answers[0]))}
        if question.kind in ("efficacy", "paraphrase"):
            out["old_mentioned"] = float(mentions(answer.text, question.meta["true"]))
        elif question.kind == "neighbourhood":
            out["new_mentioned"] = float(mentions(answer.text, question.meta["new"]))
        return out


register_task("counterfact", CounterFactTask)


# --- which facts the base model knows ------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def check_known(memory: KnowledgeMemory, records: Sequence[dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
    """Measure, with the bare base model, how well it knows each record's true answer (one dict per record).

    Keys: ``id``; ``distinct_first_token`` (true and new start with different tokens); ``p_true``/``p_new``
    (first-token log-probabilities on the main question) and ``main`` (p_true > p_new); ``paraphrases`` (the same
    test on each paraphrase); ``greedy`` (the greedy answer to the main question, at most 16 tokens) and
    ``greedy_true``/``greedy_new`` (whether it mentions the true/new answer); ``neighbours`` (p(neighbour answer)
    > p(new) on each neighbour question) and ``neighbours_greedy`` (the greedy answer to each neighbour question
    mentions its answer). Each distinct question (and question/candidates pair) is asked once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    tok = memory.tokenizer

    def first_token(text: str) -> int:
        return int(tok(text, add_special_tokens=False)["input_ids"][0])

    scored: dict[tuple[str, str, str], tuple[float, float]] = {}  # (question, a, b) -> (log p(a), log p(b))
    answers: dict[str, str] = {}  # question -> greedy answer
    for r in records:
        for q in (r["question"], *r["paraphrases"]):
            scored[(q, r["true"], r["new"])] = (0.0, 0.0)
        for n in r["neighbours"]:
            scored[(n["question"], n["answer"], r["new"])] = (0.0, 0.0)
            answers[n["question"]] = ""
        answers[r["question"]] = ""
    keys = list(scored)
    for chunk in _chunks(keys, batch_size):
        lps = memory.logprobs([k[0] for k in chunk], [[k[1], k[2]] for k in chunk], namespace=None, reduce="first")
        for k, (a, b) in zip(chunk, lps):
            scored[k] = (a, b)
    questions = list(answers)
    for chunk in _chunks(questions, batch_size):
        for q, ans in zip(chunk, memory.ask(list(chunk), namespace=None, max_new_tokens=16)):
            answers[q] = ans.text

    def beats(q: str, a: str, b: str) -> bool:
        lp_a, lp_b = scored[(q, a, b)]
        return lp_a > lp_b

    out: list[dict[str, Any]] = []
    for r in records:
        q, true, new = r["question"], r["true"], r["new"]
        p_true, p_new = scored[(q, true, new)]
        greedy = answers[q]
        out.append({
            "id": r["id"],
            "distinct_first_token": first_token(true) != first_token(new),
            "p_true": round(p_true, 4),
            "p_new": round(p_new, 4),
            "main": p_true > p_new,
            "paraphrases": [beats(p, true, new) for p in r["paraphrases"]],
            "greedy": greedy,
            "greedy_true": mentions(greedy, true),
            "greedy_new": mentions(greedy, new),
            "neighbours": [beats(n["question"], n["answer"], new) for n in r["neighbours"]],
            "neighbours_greedy": [mentions(answers[n["question"]], n["answer"]) for n in r["neighbours"]],
        })
    return out


def knows(check: dict[str, Any], criterion: str = CRITERION) -> bool:
    """Whether one ``check_known`` result passes ``criterion`` (distinct first tokens are always required)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: expected one of {sorted(CRITERIA)}, got {criterion!r}")
    if not check["distinct_first_token"] or not check["main"]:
        return False
    return bool(check["greedy_true"]) if criterion == "greedy+main" else any(check["paraphrases"])


def summarise(checks: Sequence[dict[str, Any]], kept: int, criterion: str) -> str:
    """The ``--check`` printout: counts and the rate of each criterion over all candidates."""
    n = max(len(checks), 1)

    def rate(pred: Any) -> str:
        hits = sum(1 for c in checks if pred(c))
        return f"{hits:4d}/{len(checks)} = {hits / n:.3f}"

    lines = [
        f"candidates: {len(checks)}",
        f"kept:       {kept}  (criterion {criterion!r}: {CRITERIA[criterion]}; distinct first tokens required)",
        f"  distinct first token (true vs new):       {rate(lambda c: c['distinct_first_token'])}",
        f"  main:  p_first(true) > p_first(new):      {rate(lambda c: c['main'])}",
        f"  greedy answer mentions true:              {rate(lambda c: c['greedy_true'])}",
        f"  greedy answer mentions new:               {rate(lambda c: c['greedy_new'])}",
        f"  paraphrase 1 p(true) > p(new):            {rate(lambda c: c['paraphrases'][0])}",
        f"  paraphrase 2 p(true) > p(new):            {rate(lambda c: c['paraphrases'][1])}",
        f"  both paraphrases:                         {rate(lambda c: all(c['paraphrases']))}",
        f"  greedy + main (preferred criterion):      {rate(lambda c: knows(c, 'greedy+main'))}",
        f"  main + >= 1 paraphrase (fallback):        {rate(lambda c: knows(c, 'main+paraphrase'))}",
        f"  neighbours p(answer) > p(new), both:      {rate(lambda c: all(c['neighbours']))}",
        f"  neighbours greedy mention answer, both:   {rate(lambda c: all(c['neighbours_greedy']))}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tasks.counterfact", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="check every candidate with the base model, write the kept file")
    parser.add_argument("--candidates", type=Path, default=CANDIDATES)
    parser.add_argument("--out", type=Path, default=KEPT)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--criterion", choices=sorted(CRITERIA), default=CRITERION)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if not args.check:
        parser.error("nothing to do: pass --check")

    import torch

    from loramem import KnowledgeMemory

    torch.set_num_threads(1)
    records = load_records(args.candidates)
    with tempfile.TemporaryDirectory() as tmp:
        memory = KnowledgeMemory.open(tmp, model=args.model)
        try:
            checks = check_known(memory, records, batch_size=args.batch_size)
        finally:
            memory.close()
    kept = [{**r, "base_check": c} for r, c in zip(records, checks) if knows(c, args.criterion)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(summarise(checks, len(kept), args.criterion))
    by_relation: dict[str, list[int]] = {}
    for r, c in zip(records, checks):
        by_relation.setdefault(r["relation"], [0, 0])[0] += 1
        by_relation[r["relation"]][1] += knows(c, args.criterion)
    print("kept by relation: " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_relation.items())))
    print(f"wrote {len(kept)} records to {args.out}")


if __name__ == "__main__":
    main()
