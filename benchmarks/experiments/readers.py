"""The ``readers`` experiment: readers compared on one task, per grid point (the runner's default kind).

Per point, on the run's one ``KnowledgeMemory``:

1. build the task's data (items, questions),
2. write the items into LoRA module(s) when a LoRA reader is compared (namespace ``p000``, ``p001``, ...),
3. build a RAG index when a RAG reader is compared,
4. ask every question through every reader in one batched call, timed, with peak memory sampled,
5. score every answer (task metrics, text metrics, candidate log-probabilities, the optional judge).

A failed point or reader is recorded (``errors``) and the run goes on; ``results.json`` is saved after every
point, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import inspect
import itertools
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..config import parse_reader
from ..provenance import PeakRSS, maxrss_mb

if TYPE_CHECKING:
    from loramem import Answer

    from ..config import Experiment, Point
    from ..runner import Runner
    from ..tasks import Question, Task, TaskData


def run(runner: Runner, results: dict[str, Any]) -> None:
    """Every point of the experiment's grid, in order; each point's record appended to ``results["points"]``."""
    from tqdm.auto import tqdm

    exp = runner.experiment
    points = exp.points()
    runner.say(f"{exp.name}: {len(points)} point(s) x {len(exp.readers)} reader(s) on {exp.model} "
               f"-> {runner.output.out}")
    measure = ReadersExperiment(runner)
    for point in tqdm(points, desc=exp.name, unit="point", disable=len(points) < 2):
        try:
            record = measure.run_point(point)
        except Exception as exc:  # a failed point (a task that cannot build, a write that fails) is
            traceback.print_exc()  # recorded, and the run goes on with the next point
            record = {"index": point.index, "label": point.label, "namespace": point.namespace,
                      "overrides": point.overrides, "error": runner.error(_where(point, None), exc), "readers": {}}
        results["points"].append(record)
        results["ru_maxrss_mb"] = round(maxrss_mb(), 1)
        runner.save(results)


def _where(point: Point, reader: str | None) -> str:
    return f"point {point.index} ({point.label})" + (f" reader {reader}" if reader else "")


# --- scoring ---------------------------------------------------------------------------------------------------------


def score_answer(task: Task, question: Question, answer: Answer) -> dict[str, float]:
    """Text metrics against the gold answers, then the task's own metrics (they win on a name clash)."""
    from ..metrics import text_metrics

    metrics = {k: float(v) for k, v in text_metrics(answer.text, question.answers).items()}
    metrics.update({k: float(v) for k, v in task.score(question, answer).items()})
    return metrics


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def aggregate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every metric over the samples that have it, overall and per question kind."""

    def means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
        names = sorted({k for r in rows for k in r["metrics"]})
        return {k: round(_mean([r["metrics"][k] for r in rows if k in r["metrics"]]), 4) for k in names}

    kinds = sorted({s["kind"] for s in samples})
    return {
        "n": len(samples),
        "metrics": means(samples),
        "by_kind": {k: {"n": sum(s["kind"] == k for s in samples), "metrics": means([s for s in samples if s["kind"] == k])}
                    for k in kinds},
    }


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` explicitly (a ``**kwargs`` catch-all does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def limit_questions(questions: list[Question], n: int | None) -> list[Question]:
    """The first ``n`` questions, taken round-robin over question kinds so every kind stays represented."""
    if n is None or n >= len(questions):
        return questions
    by_kind: dict[str, list[Question]] = {}
    for q in questions:
        by_kind.setdefault(q.kind, []).append(q)
    order = [q for batch in itertools.zip_longest(*by_kind.values()) for q in batch if q is not None]
    keep = {id(q) for q in order[:n]}
    return [q for q in questions if id(q) in keep]


def _write_record(reports: Sequence[Any]) -> dict[str, Any]:
    """The write cost of a point: one module's report, or the sum over a point's modules (recall item-weighted)."""
    items = sum(r.items_total for r in reports) or 1
    train_s = sum(r.timings.get("train", 0.0) for r in reports)
    tokens = sum(r.tokens_trained for r in reports)
    return {
        "modules": len(reports),
        "seconds": round(sum(r.seconds for r in reports), 3),
        "steps": sum(r.steps for r in reports),
        "tokens_trained": tokens,
        "knowledge_tokens": sum(r.knowledge_tokens for r in reports),
        "recall": round(sum(r.recall * r.items_total for r in reports) / items, 4),
        "reached_target": all(r.reached_target for r in reports),
        "trainable_params": sum(r.trainable_params for r in reports),
        "tokens_per_second": round(tokens / train_s, 1) if train_s > 0 else reports[0].tokens_per_second,
        "items": sum(r.items_total for r in reports),
        "examples": sum(r.examples for r in reports),
        "parts": [
            {"module_id": r.module_id, "seconds": round(r.seconds, 3), "steps": r.steps, "recall": r.recall,
             "items": r.items_total, "trainable_params": r.trainable_params, "timings": r.timings}
            for r in reports
        ],
    }


class ReadersExperiment:
    """Measures one point at a time on the runner's memory (``runner.mem``), writing samples as it goes."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.output = runner.output
        self.say = runner.say

    @property
    def mem(self) -> Any:
        return self.runner.mem

    @property
    def judge(self) -> Any:
        return self.runner.judge

    def run_point(self, point: Point) -> dict[str, Any]:
        """Build the task, write, index, then answer and score through every reader."""
        from ..tasks import get_task

        exp, mem, ns = point.experiment, self.mem, point.namespace
        assert mem is not None
        t_point = time.perf_counter()
        mem.read_config = exp.read  # the grid may vary read settings per point
        task = get_task(exp.task.name)
        options = dict(exp.task.options)
        if _accepts(task.build, "tokenizer"):
            options["tokenizer"] = mem.tokenizer
        data = task.build(exp.task.size, exp.task.seed, **options)
        questions = limit_questions(data.questions, exp.limit)
        record: dict[str, Any] = {
            "index": point.index,
            "label": point.label,
            "namespace": ns,
            "overrides": point.overrides,
            "config": {k: v for k, v in exp.to_dict().items() if k not in ("grid", "notes", "name", "model")},
            "task": {"name": exp.task.name, "primary": task.primary, "size": exp.task.size, "seed": exp.task.seed,
                     "meta": data.meta, "items": len(data.items), "groups": len(data.groups),
                     "questions": len(questions), "questions_total": len(data.questions),
                     "kinds": sorted({q.kind for q in questions})},
            "write": None,
            "modules": {},
            "rag_index": None,
            "readers": {},
        }
        if any(r.startswith("lora") for r in exp.readers):
            record["write"], record["modules"] = self._write(exp, data, ns)
            w = record["write"]
            self.say(f"  {point.label}: wrote {w['items']} items -> {w['modules']} module(s): recall {w['recall']:.2f} "
                     f"after {w['steps']} steps, {w['seconds']:.1f}s, {w['trainable_params']:,} trainable params")
        rag_index = None
        if any("rag" in r for r in exp.readers):
            from loramem.readers import RAGIndex

            t0 = time.perf_counter()
            rag_index = RAGIndex.build(data.items, path=self.output.store / "rag" / ns, chunk_size=exp.rag.chunk_size)
            record["rag_index"] = {"seconds": round(time.perf_counter() - t0, 3), "chunks": len(rag_index)}
        for name in exp.readers:
            try:
                record["readers"][name] = self._run_reader(name, point, task, data, questions, rag_index, record)
            except Exception as exc:  # one broken reader must not lose the other readers' measurements
                traceback.print_exc()
                record["readers"][name] = {"error": self.runner.error(_where(point, name), exc), "n": 0}
        record["seconds"] = round(time.perf_counter() - t_point, 3)
        return record

    def _write(self, exp: Experiment, data: TaskData, ns: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Write the point's items: one module, or one per task group. Returns the cost and group -> module id."""
        mem = self.mem
        assert mem is not None
        kwargs: dict[str, Any] = {"lora": exp.lora, "train": exp.train, "synth": exp.synth}
        if data.preserve and _accepts(mem.write, "preserve"):
            kwargs["preserve"] = data.preserve  # e.g. CounterFact's neighbourhood prompts (the preservation term)
        if exp.modules == "single":
            if _accepts(mem.write, "split"):
                kwargs["split"] = False  # a capacity measurement needs every item in the one module
            report = mem.write(data.items, namespace=ns, **kwargs)
            return _write_record([report]), {g: report.module_id for g in data.groups}
        reports, modules = [], {}
        for g in data.groups:
            report = mem.write(data.items_of(g), namespace=ns, module=f"{ns}-{g}", **kwargs)
            reports.append(report)
            modules[g] = report.module_id
        return _write_record(reports), modules

    def _routing(self, exp: Experiment, questions: list[Question], modules: dict[str, str],
                 routing: str | None = None) -> dict[str, Any]:
        """Keyword arguments that pick each question's module(s) for a LoRA reader (per_group modules only)."""
        routing = routing or exp.routing
        if exp.modules == "single":
            return {}
        if routing == "oracle":
            missing = sorted({str(q.group) for q in questions if q.group not in modules})
            if missing:
                raise ValueError(f"oracle routing: questions name groups that have no module: {missing[:5]}")
            return {"modules": [modules[str(q.group)] for q in questions]}
        return {"route": routing}

    def _run_reader(self, name: str, point: Point, task: Task, data: TaskData, questions: list[Question],
                    rag_index: Any, record: dict[str, Any]) -> dict[str, Any]:
        from loramem.readers import build_reader

        exp, mem = point.experiment, self.mem
        assert mem is not None
        lora = name.startswith("lora")
        base_name, routing, combine = parse_reader(name)
        t0 = time.perf_counter()
        reader = build_reader(base_name, mem, namespace=point.namespace if lora else None, items=data.items,
                              rag_index=rag_index, k=exp.rag.k, chunk_size=exp.rag.chunk_size,
                              token_budget=exp.icl.token_budget, max_new_tokens=exp.read.max_new_tokens,
                              combine=combine)
        build_s = time.perf_counter() - t0
        routed = lora and exp.modules == "per_group"
        kwargs = {**exp.ask, **(self._routing(exp, questions, record["modules"], routing or None) if lora else {})}
        texts = [q.text for q in questions]
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            answers = reader.answer(texts, **kwargs)
            answer_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            logprobs = self._logprobs(reader, questions, answers, routed)
            score_s = time.perf_counter() - t0
        if len(answers) != len(questions):
            raise RuntimeError(f"reader {name} returned {len(answers)} answers for {len(questions)} questions")
        latency = answer_s / len(questions)
        samples = []
        for q, a, lp in zip(questions, answers, logprobs):
            metrics = score_answer(task, q, a)
            if lp is not None:
                metrics["lp_correct"] = float(lp[0] > max(lp[1:]))
            if routed and q.group in record["modules"]:
                metrics["route_correct"] = float(record["modules"][q.group] in a.modules)
            judged = None
            if self.judge is not None:
                judged = self.judge.score(q.text, q.answers[0], a.text)
                metrics["judge_score"] = float(judged["judge_score"])
            samples.append({
                "point": point.index, "label": point.label, "reader": name, "question_id": q.id, "kind": q.kind,
                "group": q.group, "question": q.text, "gold": q.answers, "answer": a.text, "metrics": metrics,
                "logprobs": lp, "candidates": q.candidates, "modules": a.modules, "sources": a.sources,
                "details": a.details, "usage": a.usage, "timings": a.timings, "latency_s": round(latency, 4),
                "judge": judged,
            })
        self.output.append(samples)
        dropped = [a.details["dropped_items"] for a in answers if "dropped_items" in a.details]
        setup_s = (record["write"]["seconds"] if lora and record["write"] else 0.0) + (
            record["rag_index"]["seconds"] if "rag" in name and record["rag_index"] else 0.0)
        summary = {
            **aggregate(samples),
            "latency_s": round(latency, 4),
            "answer_seconds": round(answer_s, 3),
            "score_seconds": round(score_s, 3),
            "build_seconds": round(build_s, 3),
            "setup_seconds": round(setup_s, 3),
            "peak_rss_mb": round(rss.peak_mb, 1),
            "input_tokens": round(_mean([a.usage.get("input_tokens", 0) for a in answers]), 1),
            "output_tokens": round(_mean([a.usage.get("output_tokens", 0) for a in answers]), 1),
            "dropped_items": round(_mean(dropped), 2) if dropped else None,
            "ask": {k: v for k, v in kwargs.items() if k != "modules"},
        }
        primary = summary["metrics"].get(task.primary, float("nan"))
        lp_note = f" lp_correct={summary['metrics']['lp_correct']:.2f}" if "lp_correct" in summary["metrics"] else ""
        self.say(f"  [{point.index + 1}] {point.label} | {name:<8} {task.primary}={primary:.3f}{lp_note} "
                 f"n={len(samples)} {latency:.3f}s/q rss={rss.peak_mb:.0f}MB")
        return summary

    def _logprobs(self, reader: Any, questions: list[Question], answers: list[Answer],
                  routed: bool) -> list[list[float] | None]:
        """Log-probability of each candidate (first token) for questions that have candidates, else None.

        With routed LoRA modules, each question is scored with the module(s) its answer used.
        """
        out: list[list[float] | None] = [None] * len(questions)
        idx = [i for i, q in enumerate(questions) if q.candidates]
        if not idx:
            return out
        kwargs: dict[str, Any] = {"reduce": "first"}
        if routed:
            kwargs["modules"] = [list(answers[i].modules) for i in idx]
        scores = reader.score([questions[i].text for i in idx], [questions[i].candidates for i in idx], **kwargs)
        for i, s in zip(idx, scores):
            out[i] = [float(x) for x in s]
        return out
