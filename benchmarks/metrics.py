"""Text metrics for benchmark answers: exact/normalised match, containment, token F1, BLEU-4, ROUGE-L, LLM judge.

Every reader's answer is scored the same way by ``text_metrics(prediction, references)``: each metric is the
best value over the gold references (the first reference is the canonical one, the others aliases).
Normalisation follows SQuAD: lowercase, no punctuation, no articles (a/an/the), single spaces.
``contains`` is the lenient one that suits small models, which answer in sentences ("It was founded in 1987.").

nltk (BLEU) and rouge_score (ROUGE-L) are imported on first use. The LLM judge is off unless a run configures
one: ``LLMJudge(llm).score(question, reference, prediction)`` asks any callable or LangChain chat model for a
0-10 score and, as in the paper, scores an unparseable reply 0.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from loramem.synth.llm import call_llm

TEXT_METRICS = ("exact", "normalised", "contains", "f1", "bleu4", "rougeL")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """SQuAD normalisation: lowercase, strip punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(pred: str, gold: str) -> float:
    return float(pred.strip() == gold.strip())


def normalised_match(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def contains(pred: str, gold: str) -> float:
    """1.0 when the normalised gold answer is a whole-word span of the normalised prediction."""
    g, p = normalize(gold), normalize(pred)
    if not g:
        return 0.0
    return float(f" {g} " in f" {p} ")


def token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 between the normalised token bags."""
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _bleu_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def _bleu() -> tuple[Any, Any]:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu, SmoothingFunction().method1


def bleu4(pred: str, gold: str) -> float:
    """Sentence BLEU-4 (uniform weights, smoothing method 1) on lowercased word tokens."""
    p, g = _bleu_tokens(pred), _bleu_tokens(gold)
    if not p or not g:
        return 0.0
    sentence_bleu, smoothing = _bleu()
    return float(sentence_bleu([g], p, weights=(0.25, 0.25, 0.25, 0.25), smoothing_function=smoothing))


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(pred: str, gold: str) -> float:
    """ROUGE-L F-measure with Porter stemming (rouge_score)."""
    if not pred.strip() or not gold.strip():
        return 0.0
    return float(_rouge_scorer().score(gold, pred)["rougeL"].fmeasure)


_METRICS = {
    "exact": exact_match,
    "normalised": normalised_match,
    "contains": contains,
    "f1": token_f1,
    "bleu4": bleu4,
    "rougeL": rouge_l,
}


def text_metrics(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Every text metric of one prediction, each the maximum over the references (zeros when there are none)."""
    if isinstance(references, str):
        raise TypeError(f"references: expected a list of strings, got the string {references!r}")
    refs = [r for r in references if r is not None]
    if not prediction or not prediction.strip():
        return dict.fromkeys(_METRICS, 0.0)
    return {name: max((fn(prediction, r) for r in refs), default=0.0) for name, fn in _METRICS.items()}


def aggregate(rows: Iterable[Mapping[str, Any]], keys: Sequence[str] | None = None) -> dict[str, float]:
    """Mean of each key over the rows that have a numeric value for it (keys no row has are left out).

    ``keys`` None: every numeric key, in the order first seen.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for key in keys if keys is not None else row:
            value = row.get(key)
            if isinstance(value, (bool, int, float)):
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
    order = list(keys) if keys is not None else list(sums)
    return {k: sums[k] / counts[k] for k in order if counts.get(k)}


JUDGE_PROMPT = """You are grading an answer to a question against a reference answer.

Question: {question}
Reference answer: {reference}
Answer to grade: {prediction}

Score the answer from 0 to 10 for factual alignment with the reference, completeness (does it give everything \
the reference gives) and relevance to the question. 10 means fully correct and complete; 0 means wrong, \
missing or unrelated. Judge the facts, not the wording or length.

Reply with only a JSON object: {{"score": <0-10>, "rationale": "<one or two sentences>"}}"""


class LLMJudge:
    """An LLM grading answers 0-10 against the reference (any callable ``str -> str`` or LangChain chat model)."""

    def __init__(self, llm: Any, name: str | None = None) -> None:
        if llm is None:
            raise ValueError("LLMJudge needs llm=<callable or chat model>, got None")
        self.llm = llm
        self.name = name or _llm_name(llm)

    def prompt(self, question: str, reference: str, prediction: str) -> str:
        return JUDGE_PROMPT.format(question=question, reference=reference, prediction=prediction)

    def score(self, question: str, reference: str, prediction: str) -> dict[str, Any]:
        """``{"judge_score": 0-10, "rationale": str, "judge": name}``; an unparseable reply scores 0."""
        reply = call_llm(self.llm, self.prompt(question, reference, prediction))
        parsed = parse_judge_reply(reply)
        if parsed is None:
            return {"judge_score": 0.0, "rationale": f"unparseable judge output: {reply[:200]!r}", "judge": self.name}
        score, rationale = parsed
        return {"judge_score": score, "rationale": rationale, "judge": self.name}


def parse_judge_reply(reply: str) -> tuple[float, str] | None:
    """(score clamped to [0, 10], rationale) from the first JSON object in the reply, or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            obj, _ = decoder.raw_decode(reply, match.start())
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        raw = obj.get("score")
        try:
            score = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if isinstance(raw, bool) or math.isnan(score):
            return None
        return min(10.0, max(0.0, score)), str(obj.get("rationale", ""))
    return None


def _llm_name(llm: Any) -> str:
    for attr in ("model_name", "model"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    name = getattr(llm, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return type(llm).__name__
