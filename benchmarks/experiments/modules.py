"""The ``modules`` experiment: many modules on one PhoneBook (planning, routing, composition, update/delete).

One store, written once, measured five ways (``ModulesOptions``; ``k = options.modules``, ``r = lora.r``):

1. equal parameter budget: k modules of rank r (one PhoneBook sector each) answered with oracle routing and with
   the embedding router, against one module of rank k*r holding everything (given the same total training steps
   the k modules used), full-context ICL and the bare model;
2. read throughput: one mixed-adapter pass against one pass per module on the same questions, each side timed
   ``options.throughput_repeats`` times, interleaved (A B, B A, A B, ... so a slow spell hits both sides), with
   the median, min and max of each side and the ratio of the medians;
3. merging: the first 2..k modules merged with each method, asked their own entries;
4. update/delete: forget ``options.changes`` entries of one module and update as many of another (verified by
   ``KnowledgeMemory``), rebuild time against rewriting every module, and the generated answers afterwards;
5. selection: every question read with oracle routing, the embedding router's top-1, its top-k with selection
   (each routed module within ``ReadConfig.select_margin`` of the best routing score one row of a mixed batch,
   the surest answer kept), the same with no margin (every routed module competes) and its top-k merged (each of
   ``options.select_merge_methods``). Per question: ``route_correct`` (the gold module among the routed),
   ``selected_correct`` (the gold module the one that answered; not for merges, which choose none) and
   ``correct``; per way, those shares and ``selected_given_routed`` (selection accuracy where routing was right).

``options.parts`` picks which parts run (the k sector modules are written for any of them; the big module only
for ``budget``). ``results.json``: one point whose ``readers`` (every section that generated answers,
``metrics.correct``), ``writes``, ``throughput``, ``merging``, ``update_delete`` and ``selection`` hold the
figures; ``samples.jsonl``: every answer.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, Any

from loramem import Fact, LoraSpec, ReadConfig, TrainConfig
from loramem.phonebook import phone_correct, phonebook
from loramem.readers import ICLContext, MemoryReader
from loramem.route import routing_accuracy

from ..config import ModulesOptions
from ..provenance import Timer

if TYPE_CHECKING:
    from ..runner import Runner


def run(runner: Runner, results: dict[str, Any]) -> None:
    ModulesExperiment(runner, results).run()


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements (and the measurements themselves)."""
    return {"values": [round(v, 4) for v in values], "median": round(statistics.median(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def interleaved(repeats: int) -> list[bool]:
    """The order of the timed passes, True = mixed batch: A B, B A, A B, ... (each side ``repeats`` times)."""
    return [side for i in range(repeats) for side in ((True, False) if i % 2 == 0 else (False, True))]


def other_phone(phone: str) -> str:
    """A different number of the same shape (each digit + 3 mod 10): the updated value."""
    return "".join(str((int(c) + 3) % 10) if c.isdigit() else c for c in phone)


def write_row(rep: Any) -> dict[str, Any]:
    return {"seconds": round(rep.seconds, 2), "steps": rep.steps, "tokens_trained": rep.tokens_trained,
            "knowledge_tokens": rep.knowledge_tokens, "recall": rep.recall, "reached_target": rep.reached_target,
            "trainable_params": rep.trainable_params, "items": rep.items_total}


class ModulesExperiment:
    def __init__(self, runner: Runner, results: dict[str, Any]) -> None:
        exp = runner.experiment
        assert runner.mem is not None and isinstance(exp.options, ModulesOptions)
        self.runner, self.results, self.mem, self.exp, self.opts = runner, results, runner.mem, exp, exp.options
        k = self.opts.modules
        self.facts = phonebook(exp.task.size, seed=exp.task.seed)
        self.sectors = [self.facts[g::k] for g in range(k)]
        module_of = {f.id: f"pb.s{g}" for g, sec in enumerate(self.sectors) for f in sec}
        self.questions = [f.canonical_question for f in self.facts]
        self.gold = [f.object for f in self.facts]
        self.oracle = [module_of[f.id] for f in self.facts]
        self.point: dict[str, Any] = {
            "index": 0, "label": f"{k} x r{exp.lora.r} vs 1 x r{k * exp.lora.r}", "overrides": {},
            "task": {"name": "phonebook", "primary": "correct", "size": exp.task.size, "seed": exp.task.seed,
                     "questions": len(self.questions)},
            "writes": {}, "readers": {}, "throughput": None, "merging": [], "update_delete": None, "selection": None,
        }
        results["points"].append(self.point)

    def run(self) -> None:
        parts = self.opts.parts
        steps = self.write("budget" in parts)
        if "budget" in parts:
            self.read_all(steps)
        if "throughput" in parts:
            self.throughput()
        if "merging" in parts:
            self.merging()
        if "selection" in parts:  # before update/delete, which changes two modules
            self.selection()
        if "update_delete" in parts and self.opts.changes:
            self.update_delete()

    def say(self, text: str) -> None:
        self.runner.say(f"  {self.exp.name}: {text}")

    def record(self, section: str, questions: list[str], gold: list[str], answers: list[Any],
               seconds: float | None = None, peak_mb: float | None = None,
               extra: list[dict[str, float]] | None = None) -> dict[str, Any]:
        """Score a section's answers, append them to samples.jsonl, and return its summary row.

        ``extra``: more per-question metrics (one dict per question); the row gets their means too."""
        correct = [phone_correct(a.text, g) for a, g in zip(answers, gold)]
        metrics = [{"correct": float(c), **(extra[i] if extra else {})} for i, c in enumerate(correct)]
        self.runner.output.append(
            {"point": 0, "label": self.point["label"], "reader": section, "question_id": f"q{i:04d}",
             "kind": "phonebook", "question": q, "gold": [g], "answer": a.text, "metrics": m,
             "modules": a.modules, "details": a.details}
            for i, (q, g, a, m) in enumerate(zip(questions, gold, answers, metrics)))
        names = sorted({k for m in metrics for k in m})
        row: dict[str, Any] = {"n": len(gold), "metrics": {
            k: round(sum(m[k] for m in metrics) / len(metrics), 4) for k in names}}
        if seconds is not None:
            row["latency_s"] = round(seconds / max(1, len(gold)), 4)
        if peak_mb is not None:
            row["peak_rss_mb"] = round(peak_mb, 1)
        self.point["readers"][section] = row
        self.runner.save(self.results)
        return row

    # 1. writes: k modules of rank r, then one of rank k*r with as many steps as the k modules used together.
    def write(self, big: bool = True) -> int:
        mem, exp, k = self.mem, self.exp, self.opts.modules
        steps = 0
        for g, sector in enumerate(self.sectors):
            rep = mem.write(sector, namespace="pb", module=f"pb.s{g}", split=False, lora=exp.lora, train=exp.train,
                            synth=exp.synth)
            steps += rep.steps
            self.point["writes"][f"pb.s{g}"] = write_row(rep)
            self.say(f"write pb.s{g}: {rep.summary()}")
        if not big:
            self.runner.save(self.results)
            return steps
        big_train = TrainConfig.from_dict({**exp.train.to_dict(), "max_steps": max(1, steps)})
        big_lora = LoraSpec.from_dict({**exp.lora.to_dict(), "r": k * exp.lora.r})
        rep = mem.write(self.facts, namespace="pb1", module="pb1.all", split=False, lora=big_lora, train=big_train,
                        synth=exp.synth)
        self.point["writes"]["pb1.all"] = write_row(rep)
        self.say(f"write pb1.all: {rep.summary()}")
        self.runner.save(self.results)
        return steps

    # 2. every question through each way of reading.
    def read_all(self, steps: int) -> None:
        mem, qs, k, r = self.mem, self.questions, self.opts.modules, self.exp.lora.r
        icl = MemoryReader(mem, context=ICLContext(mem.tokenizer, self.facts, token_budget=self.exp.icl.token_budget),
                           name="icl")
        ways: list[tuple[str, Any]] = [
            (f"{k} x r{r}, oracle routing", lambda: mem.ask(qs, namespace="pb", modules=self.oracle)),
            (f"{k} x r{r}, embedding routing", lambda: mem.ask(qs, namespace="pb", route="embedding")),
            (f"1 x r{k * r}, everything", lambda: mem.ask(qs, namespace="pb1")),
            ("icl (full context)", lambda: icl.answer(qs)),
            ("base", lambda: mem.ask(qs, namespace=None)),
        ]
        for name, ask in ways:
            with Timer() as t:
                answers = ask()
            row = self.record(name, qs, self.gold, answers, t.seconds, t.peak_mb)
            if "embedding" in name:
                row["routing"] = routing_accuracy([[(m, 1.0) for m in a.modules] for a in answers], self.oracle)
                right = [a.modules[:1] == [o] for a, o in zip(answers, self.oracle)]
                hits = [phone_correct(a.text, g) for a, g in zip(answers, self.gold)]
                row["correct_when_routed_right"] = round(
                    sum(h for h, ok in zip(hits, right) if ok) / max(1, sum(right)), 4)
            if name.startswith("icl"):
                row["icl"] = icl.context.details  # type: ignore[union-attr]
            if name.startswith("1 x"):
                row["steps_given"] = steps
            self.say(f"{name}: correct {row['metrics']['correct']:.3f}, {row['latency_s']:.3f} s/question")
        self.runner.save(self.results)

    # 3. read throughput: mixed-adapter passes against module-by-module passes, interleaved, same questions.
    def throughput(self) -> None:
        mem, qs = self.mem, self.questions
        read = self.exp.read
        rates: dict[bool, list[float]] = {True: [], False: []}
        order = interleaved(self.opts.throughput_repeats)
        try:
            for mixed in order:
                mem.read_config = ReadConfig.from_dict({**read.to_dict(), "mixed_batches": mixed})
                t0 = time.perf_counter()
                mem.ask(qs, namespace="pb", modules=self.oracle)
                rates[mixed].append(len(qs) / (time.perf_counter() - t0))
        finally:
            mem.read_config = read
        batched, single = spread(rates[True]), spread(rates[False])
        self.point["throughput"] = {
            "unit": "questions/s", "questions": len(qs), "repeats": self.opts.throughput_repeats,
            "order": ["mixed_batch" if m else "module_by_module" for m in order],
            "mixed_batch": batched, "module_by_module": single,
            "ratio_of_medians": round(batched["median"] / single["median"], 3),
        }
        self.say(f"throughput: mixed {batched['median']:.2f} q/s [{batched['min']:.2f}, {batched['max']:.2f}], module "
                 f"by module {single['median']:.2f} [{single['min']:.2f}, {single['max']:.2f}]: "
                 f"{self.point['throughput']['ratio_of_medians']:.2f}x (medians of {self.opts.throughput_repeats})")
        self.runner.save(self.results)

    # 4. merging the first n modules with each method, asked the entries those modules hold.
    def merging(self) -> None:
        for n in range(2, self.opts.modules + 1):
            chosen = [f"pb.s{g}" for g in range(n)]
            sub = [i for i, m in enumerate(self.oracle) if m in chosen]
            qs, gs = [self.questions[i] for i in sub], [self.gold[i] for i in sub]
            for method in self.opts.merge_methods:
                entry: dict[str, Any] = {"modules": n, "method": method, "section": f"merge {method} x{n}"}
                try:
                    with Timer() as t:
                        answers = self.mem.ask(qs, namespace="pb", modules=[chosen] * len(qs), merge=method)
                except ValueError as exc:  # a method peft refuses for these adapters is a finding, not a failure
                    entry["error"] = str(exc)
                else:
                    row = self.record(entry["section"], qs, gs, answers, t.seconds, t.peak_mb)
                    entry.update(correct=row["metrics"]["correct"], n=len(qs), seconds=round(t.seconds, 2))
                self.point["merging"].append(entry)
                self.say(f"merge {method} x{n}: {entry.get('correct', entry.get('error'))}")
            self.runner.save(self.results)

    # 5. selection against merging: routing, selection and answer accuracy, separately, per question.
    def selection(self) -> None:
        mem, qs, k = self.mem, self.questions, min(self.opts.select_top_k, self.opts.modules)
        ways: list[tuple[str, dict[str, Any]]] = [
            ("selection: oracle", {"modules": self.oracle}),
            ("selection: embedding top-1", {"route": "embedding", "top_k": 1}),
            (f"selection: embedding top-{k} select", {"route": "embedding", "top_k": k}),
            # The same without the router-score margin: every routed module competes on confidence alone.
            (f"selection: embedding top-{k} select, no margin", {"route": "embedding", "top_k": k,
                                                                 "select_margin": None}),
        ]
        for method in self.opts.select_merge_methods:
            ways.append((f"selection: embedding top-{k} merge {method}",
                         {"route": "embedding", "top_k": k, "merge": method}))
        summary: dict[str, Any] = {"top_k": k, "ways": {}}
        default_read = mem.read_config
        for name, kwargs in ways:
            ask_kwargs = {key: v for key, v in kwargs.items() if key != "select_margin"}
            if "select_margin" in kwargs:
                mem.read_config = dataclasses.replace(default_read, select_margin=kwargs["select_margin"])
            try:
                with Timer() as t:
                    answers = mem.ask(qs, namespace="pb", **ask_kwargs)
            finally:
                mem.read_config = default_read
            merged = "merge" in kwargs
            extra = []
            for a, gold in zip(answers, self.oracle):
                routed = [r[0] for r in a.details.get("route", [])] if "route" in a.details else list(a.modules)
                m = {"route_correct": float(gold in routed)}
                if not merged:
                    m["selected_correct"] = float(a.modules == [gold])
                extra.append(m)
            row = self.record(name, qs, self.gold, answers, t.seconds, t.peak_mb, extra)
            if not merged:
                hit = [e["selected_correct"] for e in extra if e["route_correct"]]
                row["selected_given_routed"] = round(sum(hit) / len(hit), 4) if hit else None
            summary["ways"][name] = {"kwargs": {key: v for key, v in kwargs.items() if key != "modules"},
                                     "select_margin": kwargs.get("select_margin", default_read.select_margin),
                                     **row["metrics"], "selected_given_routed": row.get("selected_given_routed")}
            self.say(f"{name}: " + ", ".join(f"{key} {v:.3f}" for key, v in row["metrics"].items()))
        self.point["selection"] = summary
        self.runner.save(self.results)

    # 6. update and delete single facts in sectors 0 and 1; compare with rewriting every module.
    def update_delete(self) -> None:
        mem, c, sectors = self.mem, self.opts.changes, self.sectors
        deleted, changed = sectors[0][:c], sectors[1][:c]
        t0 = time.perf_counter()
        forget_report = mem.forget([f.id for f in deleted], namespace="pb")
        forget_s = time.perf_counter() - t0
        new_values = [Fact(f.subject, f.relation, other_phone(f.object), question=f.question) for f in changed]
        t0 = time.perf_counter()
        update_report = mem.update(new_values, namespace="pb")
        assert update_report is not None  # None only for values of pending items; this namespace has none
        update_s = time.perf_counter() - t0

        def qa(facts: list[Fact]) -> tuple[list[str], list[str]]:
            return [f.canonical_question for f in facts], [f.object for f in facts]

        checks = {"deleted": (*qa(deleted), "pb.s0"), "kept (sector 0)": (*qa(sectors[0][c:]), "pb.s0"),
                  "updated: new value": (*qa(new_values), "pb.s1"), "updated: old value": (*qa(changed), "pb.s1"),
                  "kept (sector 1)": (*qa(sectors[1][c:]), "pb.s1")}
        generated: dict[str, float] = {}
        for name, (qs, gs, module) in checks.items():
            if qs:
                row = self.record(f"after update/delete: {name}", qs, gs, mem.ask(qs, namespace="pb", module=module))
                generated[name] = row["metrics"]["correct"]
        row = self.record("after update/delete: deleted, bare model", checks["deleted"][0], checks["deleted"][1],
                          mem.ask(checks["deleted"][0], namespace=None))
        generated["deleted, bare model"] = row["metrics"]["correct"]
        rewrite_all = sum(w["seconds"] for name, w in self.point["writes"].items() if name.startswith("pb.s"))
        self.point["update_delete"] = {
            "changes": c,
            "forget": {"seconds": round(forget_s, 2), "steps": forget_report.steps if forget_report else 0,
                       "verify": forget_report.details.get("verify") if forget_report else None},
            "update": {"seconds": round(update_s, 2), "steps": update_report.steps,
                       "verify": update_report.details.get("verify")},
            "rewrite_all_modules_seconds": round(rewrite_all, 2),
            "generated_correct": generated,
        }
        self.say(f"update/delete: forget {forget_s:.1f}s, update {update_s:.1f}s, rewrite all {rewrite_all:.1f}s")
        self.runner.save(self.results)
