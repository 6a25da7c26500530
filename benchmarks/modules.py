"""Many-module benchmarks on one PhoneBook (issue: planning, routing, composition, update/delete).

    python -m benchmarks.modules --entries 40 --modules 4 --rank 4 --out benchmarks/results/modules-phonebook

One store, written once, measured five ways:

1. equal parameter budget: k modules of rank r (one PhoneBook sector each) answered with oracle routing and with
   the embedding router, against one module of rank k*r holding everything (given the same total training steps
   the k modules used) and full-context ICL;
2. merging: the first 2..k modules merged with each method, asked their own entries;
3. update/delete: forget some entries and update others (verified by ``KnowledgeMemory``), rebuild time against
   rewriting every module, and generated answers for the deleted, updated and kept entries;
4. read throughput: one mixed-adapter pass against one pass per module, same questions, same run.

Writes ``results.json`` and ``samples.jsonl`` (every generated answer) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from loramem import Fact, KnowledgeMemory, LoraSpec, ReadConfig, SynthConfig, TrainConfig
from loramem.config import MERGE_METHODS, PlanConfig
from loramem.phonebook import phone_correct, phonebook
from loramem.readers import ICLContext, MemoryReader
from loramem.route import routing_accuracy

from .runner import PeakRSS, git_state, machine_info, package_versions


def _score(answers: list[Any], gold: list[str]) -> float:
    return sum(phone_correct(a.text, g) for a, g in zip(answers, gold)) / max(1, len(gold))


class Recorder:
    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        self.out = out
        self.results: dict[str, Any] = {
            "benchmark": "modules-phonebook", "config": config, "versions": package_versions(), "git": git_state(),
            "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "writes": {}, "readers": {}, "merging": [], "update_delete": {}, "throughput": {},
        }
        (out / "samples.jsonl").write_text("")

    def answers(self, section: str, questions: list[str], gold: list[str], answers: list[Any]) -> None:
        with open(self.out / "samples.jsonl", "a", encoding="utf-8") as fh:
            for q, g, a in zip(questions, gold, answers):
                fh.write(json.dumps({"section": section, "question": q, "gold": g, "answer": a.text,
                                     "correct": phone_correct(a.text, g), "modules": a.modules,
                                     "details": a.details}) + "\n")

    def save(self) -> None:
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1) + "\n")
        os.replace(tmp, self.out / "results.json")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[list[Any], float, float]:
    """``fn(*args, **kwargs)`` with its wall seconds and the peak resident memory while it ran."""
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        answers = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
    return answers, seconds, rss.peak_mb


def timed_ask(mem: KnowledgeMemory, questions: list[str], **kwargs: Any) -> tuple[list[Any], float, float]:
    return timed(mem.ask, questions, **kwargs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    if out.exists() and args.fresh:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    train = TrainConfig(lr=args.lr, lora_plus_ratio=8.0, batch_tokens=512, max_steps=args.max_steps,
                        target_recall=0.95, min_epochs=args.min_epochs, progress=False)
    synth = SynthConfig(formats=("qa",), qa_paraphrases=1)
    read = ReadConfig(max_new_tokens=args.max_new_tokens, batch_size=32, progress=False)
    mem = KnowledgeMemory.open(out / "store", model=args.model, train=train, synth=synth, read=read,
                               plan=PlanConfig(split=False))
    config = {k: v for k, v in vars(args).items() if k != "func"}
    rec = Recorder(out, config | {"train": train.to_dict(), "synth": synth.to_dict(), "read": read.to_dict()})
    k, r = args.modules, args.rank
    facts = phonebook(args.entries, seed=args.seed)
    sectors = [facts[g::k] for g in range(k)]
    module_of = {f.id: f"pb.s{g}" for g, sec in enumerate(sectors) for f in sec}
    questions = [f.canonical_question for f in facts]
    gold = [f.object for f in facts]
    oracle = [module_of[f.id] for f in facts]

    # 1. writes: k modules of rank r, then one of rank k*r with as many steps as the k modules used together.
    steps = 0
    for g, sec in enumerate(sectors):
        rep = mem.write(sec, namespace="pb", module=f"pb.s{g}", lora=LoraSpec(r=r))
        steps += rep.steps
        rec.results["writes"][f"pb.s{g}"] = _write_row(rep)
        print(f"write pb.s{g}: {rep.summary()}", flush=True)
    big_train = TrainConfig.from_dict({**train.to_dict(), "max_steps": max(1, steps)})
    rep = mem.write(facts, namespace="pb1", module="pb1.all", lora=LoraSpec(r=k * r), train=big_train)
    rec.results["writes"]["pb1.all"] = _write_row(rep)
    print(f"write pb1.all: {rep.summary()}", flush=True)
    rec.save()

    # 2. readers on every question.
    icl = MemoryReader(mem, context=ICLContext(mem.tokenizer, facts, token_budget=args.icl_budget), name="icl")
    runs: list[tuple[str, Any]] = [
        (f"{k} x r{r}, oracle routing", lambda: timed_ask(mem, questions, namespace="pb", modules=oracle)),
        (f"{k} x r{r}, embedding routing", lambda: timed_ask(mem, questions, namespace="pb")),
        (f"1 x r{k * r}, everything", lambda: timed_ask(mem, questions, namespace="pb1")),
        ("icl (full context)", lambda: timed(icl.answer, questions)),
        ("base", lambda: timed_ask(mem, questions, namespace=None)),
    ]
    for name, fn in runs:
        answers, seconds, peak = fn()
        row = {"accuracy": _score(answers, gold), "n": len(gold), "seconds_per_question": seconds / len(gold),
               "peak_rss_mb": round(peak, 1)}
        if "embedding" in name:
            row["routing"] = routing_accuracy([[(m, 1.0) for m in a.modules] for a in answers], oracle)
            routed_right = [a.modules[:1] == [o] for a, o in zip(answers, oracle)]
            right = [phone_correct(a.text, g) for a, g in zip(answers, gold)]
            row["accuracy_when_routed_right"] = sum(c for c, ok in zip(right, routed_right) if ok) / max(1, sum(routed_right))
        if name.startswith("icl"):
            row["icl"] = icl.context.details  # type: ignore[union-attr]
        rec.results["readers"][name] = row
        rec.answers(name, questions, gold, answers)
        print(f"{name}: {json.dumps(row)}", flush=True)
        rec.save()

    # 3. read throughput: one mixed-adapter pass vs one pass per module (same questions, warm cache).
    for mixed in (True, False, True):
        mem.read_config = ReadConfig.from_dict({**read.to_dict(), "mixed_batches": mixed})
        _, seconds, _ = timed_ask(mem, questions, namespace="pb", modules=oracle)
        key = "mixed_batch" if mixed else "module_by_module"
        rec.results["throughput"].setdefault(key, []).append(round(len(questions) / seconds, 3))
    mem.read_config = read
    t = rec.results["throughput"]
    t["ratio_mixed_over_module_by_module"] = round(max(t["mixed_batch"]) / max(t["module_by_module"]), 3)
    print(f"throughput (questions/s): {json.dumps(t)}", flush=True)
    rec.save()

    # 4. merging the first n modules with each method, asked the entries those modules hold.
    for n in range(2, k + 1):
        chosen = [f"pb.s{g}" for g in range(n)]
        sub = [i for i, m in enumerate(oracle) if m in chosen]
        qs, gs = [questions[i] for i in sub], [gold[i] for i in sub]
        for method in args.merge_methods:
            try:
                t0 = time.perf_counter()
                answers, seconds, _ = timed_ask(mem, qs, namespace="pb", modules=[chosen] * len(qs), merge=method)
                row = {"modules": n, "method": method, "accuracy": _score(answers, gs), "n": len(qs),
                       "seconds": round(time.perf_counter() - t0, 2)}
                rec.answers(f"merge {method} x{n}", qs, gs, answers)
            except ValueError as exc:
                row = {"modules": n, "method": method, "error": str(exc)}
            rec.results["merging"].append(row)
            print(f"merge: {json.dumps(row)}", flush=True)
        rec.save()

    # 5. update and delete single facts in sector 0 and 1; compare with rewriting every module.
    deleted = sectors[0][: args.changes]
    changed = sectors[1][: args.changes]
    t0 = time.perf_counter()
    forget_report = mem.forget([f.id for f in deleted], namespace="pb")
    forget_s = time.perf_counter() - t0
    new_values = [Fact(f.subject, f.relation, _other_phone(f.object), question=f.question) for f in changed]
    t0 = time.perf_counter()
    update_report = mem.update(new_values, namespace="pb")
    update_s = time.perf_counter() - t0
    rewrite_all_s = sum(w["seconds"] for name, w in rec.results["writes"].items() if name.startswith("pb.s"))
    check = {
        "deleted": ([f.canonical_question for f in deleted], [f.object for f in deleted], "pb.s0"),
        "kept (sector 0)": ([f.canonical_question for f in sectors[0][args.changes:]],
                            [f.object for f in sectors[0][args.changes:]], "pb.s0"),
        "updated: new value": ([f.canonical_question for f in new_values], [f.object for f in new_values], "pb.s1"),
        "updated: old value": ([f.canonical_question for f in changed], [f.object for f in changed], "pb.s1"),
        "kept (sector 1)": ([f.canonical_question for f in sectors[1][args.changes:]],
                            [f.object for f in sectors[1][args.changes:]], "pb.s1"),
    }
    generated: dict[str, float] = {}
    for name, (qs, gs, module) in check.items():
        if not qs:
            continue
        answers = mem.ask(qs, namespace="pb", module=module)
        generated[name] = _score(answers, gs)
        rec.answers(f"after update/delete: {name}", qs, gs, answers)
    base_deleted = mem.ask(check["deleted"][0], namespace=None)
    generated["deleted, bare model"] = _score(base_deleted, check["deleted"][1])
    rec.results["update_delete"] = {
        "changes": args.changes,
        "forget": {"seconds": round(forget_s, 2), "verify": forget_report.details.get("verify") if forget_report else None,
                   "steps": forget_report.steps if forget_report else 0},
        "update": {"seconds": round(update_s, 2), "verify": update_report.details.get("verify"),
                   "steps": update_report.steps},
        "rewrite_all_modules_seconds": round(rewrite_all_s, 2),
        "generated_accuracy": generated,
    }
    print(f"update/delete: {json.dumps(rec.results['update_delete'])}", flush=True)
    rec.results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec.save()
    return rec.results


def _other_phone(phone: str) -> str:
    digits = [str((int(c) + 3) % 10) if c.isdigit() else c for c in phone]
    return "".join(digits)


def _write_row(rep: Any) -> dict[str, Any]:
    return {"seconds": round(rep.seconds, 2), "steps": rep.steps, "tokens_trained": rep.tokens_trained,
            "knowledge_tokens": rep.knowledge_tokens, "recall": rep.recall, "reached_target": rep.reached_target,
            "trainable_params": rep.trainable_params, "items": rep.items_total}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.modules", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--entries", type=int, default=40)
    p.add_argument("--modules", type=int, default=4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=60, help="step cap per small module")
    p.add_argument("--min-epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--icl-budget", type=int, default=4096)
    p.add_argument("--max-new-tokens", type=int, default=32, help="enough for a sentence around a phone number")
    p.add_argument("--changes", type=int, default=2, help="entries deleted, and entries updated")
    p.add_argument("--merge-methods", nargs="+", default=list(MERGE_METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/modules-phonebook")
    p.add_argument("--fresh", action="store_true", help="delete --out first")
    args = p.parse_args(argv)
    if args.modules < 2 or args.entries < args.modules * 2:
        p.error(f"need --modules >= 2 and --entries >= 2 x modules, got {args.modules} and {args.entries}")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
