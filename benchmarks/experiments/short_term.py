"""The ``short_term`` experiment: remember in milliseconds, and reads during a background consolidation (issue 12).

1. ``remember``: the first ``options.remembers`` shipped one-sentence memories (``loramem.memories``), one
   ``remember()`` each, in a row, into an empty namespace; after each, its first question is asked at once
   (answered by the bare model from the buffer's context). Per call: seconds to remember, seconds to remember
   and answer, and whether the reply contains the answer. The first call loads the embedder (reported apart,
   and counted in the p95).
2. ``background``: ``options.initial`` PhoneBook entries are written (the old version), ``options.idle_reads``
   of their questions asked one at a time (idle latency), then the next ``task.size`` entries remembered and a
   consolidator started (``ConsolidationPolicy(max_items=1)``). While it trains, one question every
   ``options.read_every_s`` seconds, alternating an old entry and a remembered one; then ``options.after_reads``
   more once it committed. The planner may split the entries over several modules, each committed on its own;
   the consolidation ends at the last commit. Per read: latency, the versions that answered and those active
   when it started and ended, whether the buffer was in its context, whether its entry was still pending, and
   whether it was right.

``results.json``: one point with ``remember``, ``background`` and ``tables`` for the report; ``samples.jsonl``:
one row per remember and per read.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from ..config import ShortTermOptions

if TYPE_CHECKING:
    from ..runner import Runner

NOTES, BOOK = "notes", "book"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank, 0 < q <= 100) of the values: p95 of 50 is the 48th smallest."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = int(-(-len(ordered) * q // 100))  # ceil(n q / 100)
    return round(ordered[max(0, min(len(ordered) - 1, rank - 1))], 4)


def run(runner: Runner, results: dict[str, Any]) -> None:
    from loramem import ConsolidationPolicy
    from loramem.demo import measure_matmul
    from loramem.memories import load_memories
    from loramem.phonebook import phone_correct, phonebook

    exp, mem = runner.experiment, runner.mem
    assert mem is not None and isinstance(exp.options, ShortTermOptions)
    opts = exp.options
    point: dict[str, Any] = {"index": 0, "label": f"{opts.remembers} remembers; {exp.task.size} entries consolidated "
                             f"in the background into a module of {opts.initial}", "overrides": {},
                             "task": {"name": "phonebook", "size": exp.task.size, "seed": exp.task.seed,
                                      "initial": opts.initial},
                             "matmul_gflops": round(measure_matmul(seconds=2.0), 1), "remember": None,
                             "background": None, "tables": []}
    results["points"].append(point)
    _ = mem.rt  # the model loads before the clock starts: remember itself never needs it

    # 1. remember, then answer at once
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(load_memories()[: opts.remembers]):
        t0 = time.perf_counter()
        mem.remember(m.document, namespace=NOTES)
        t1 = time.perf_counter()
        answer = mem.ask(m.questions[0], namespace=NOTES)
        t2 = time.perf_counter()
        ok = float(m.answer.lower() in answer.text.lower())
        rows.append({"point": 0, "reader": "remember", "question_id": m.id, "question": m.questions[0],
                     "gold": [m.answer], "answer": answer.text, "metrics": {"contains": ok},
                     "remember_s": round(t1 - t0, 4), "answerable_s": round(t2 - t0, 4),
                     "pending_used": m.document.id in answer.details.get("pending", []), "first": i == 0})
    runner.output.append(rows)
    rem = [r["remember_s"] for r in rows]
    ans = [r["answerable_s"] for r in rows]
    point["remember"] = {
        "n": len(rows), "first_s": rem[0], "p50_s": pct(rem, 50), "p95_s": pct(rem, 95), "max_s": max(rem),
        "answerable_p50_s": pct(ans, 50), "answerable_p95_s": pct(ans, 95),
        "contains": round(sum(r["metrics"]["contains"] for r in rows) / len(rows), 4),
        "retrieved": round(sum(r["pending_used"] for r in rows) / len(rows), 4),
        "target_p95_s": opts.target_p95_s, "target_met": pct(rem, 95) <= opts.target_p95_s}
    runner.say(f"  {exp.name}: remember p95 {point['remember']['p95_s']:.3f} s (first {rem[0]:.2f} s), remember + "
               f"answer p95 {point['remember']['answerable_p95_s']:.2f} s, contains {point['remember']['contains']:.0%}")
    tables(point)
    runner.save(results)

    # 2. reads while a consolidator trains
    book = phonebook(opts.initial + exp.task.size, seed=exp.task.seed)
    old, new = book[: opts.initial], book[opts.initial:]
    first = mem.write(old, namespace=BOOK, split=False, lora=exp.lora, train=exp.train, synth=exp.synth)
    runner.say(f"  {exp.name}: old version: {first.summary()}")
    mem.train_config, mem.lora, mem.synth_config = exp.train, exp.lora, exp.synth  # what consolidation writes with

    def active() -> dict[str, int]:
        return {m.module_id: m.version for m in mem.ls(BOOK)}

    def read(fact: Any, phase: str) -> dict[str, Any]:
        before, waiting = active(), {p.id for p in mem.pending(BOOK)}
        start = time.time()
        t0 = time.perf_counter()
        answer = mem.ask(fact.canonical_question, namespace=BOOK)
        latency = time.perf_counter() - t0
        return {"point": 0, "reader": phase, "question_id": fact.id, "question": fact.canonical_question,
                "gold": [fact.object], "answer": answer.text,
                "metrics": {"correct": float(phone_correct(answer.text, fact.object))},
                "latency_s": round(latency, 4), "start": start, "end": time.time(),
                "versions": answer.details.get("versions", {}), "active_start": before, "active_end": active(),
                "pending_used": bool(answer.details.get("pending")),
                "entry": "old" if fact in old else "pending" if fact.id in waiting else "consolidated"}

    idle = [read(old[i % len(old)], "idle") for i in range(opts.idle_reads)]
    mem.remember(new, namespace=BOOK)
    t_start = time.time()
    # The planner may split the entries over several modules (one commit each): the last commit ends it.
    worker = mem.start_consolidator(ConsolidationPolicy(max_items=1, max_age_s=None, poll_s=0.2,
                                                        namespaces=(BOOK,)))
    during: list[dict[str, Any]] = []
    try:
        i = 0
        while mem.pending(BOOK):
            tick = time.perf_counter()
            during.append(read(_pick(old, new, i), "during"))
            i += 1
            if i % 10 == 0:
                runner.say(f"  {exp.name}: {i} reads during the consolidation, last {during[-1]['latency_s']:.1f} s")
            time.sleep(max(0.0, opts.read_every_s - (time.perf_counter() - tick)))
        worker.flush(timeout=3600)  # the write in flight commits (raises if it failed)
    finally:
        worker.stop()
    commits = sorted((round(m.created_at - t_start, 1), m.module_id, m.version) for m in mem.ls(BOOK)
                     if m.created_at >= t_start)
    last_commit = t_start + commits[-1][0]
    after = [read(_pick(old, new, i), "after") for i in range(opts.after_reads)]
    for r in during:
        r["before_commit"] = r["end"] < last_commit
    runner.output.append(idle + during + after)
    before = [r for r in during if r["before_commit"]]
    lat = {name: [r["latency_s"] for r in rs] for name, rs in (("idle", idle), ("during", before), ("after", after))}
    point["background"] = {
        "old_version": first.version, "commits": [list(c) for c in commits], "consolidation_s": commits[-1][0],
        "reports": [{"steps": r.steps, "seconds": round(r.seconds, 1), "recall": r.recall, "items": r.items_total,
                     "modules": len(r.parts) or 1} for r in worker.reports],
        "handovers": mem.status()["handovers"], "reads_during": len(before),
        "versions_consistent": all(consistent(r) for r in during + after),
        "latency_s": {name: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95),
                             "mean": round(statistics.fmean(v), 4) if v else 0.0} for name, v in lat.items()},
        "correct": {name: {kind: _share([r for r in rs if r["entry"] == kind])
                           for kind in ("old", "pending", "consolidated")}
                    for name, rs in (("idle", idle), ("during", before), ("after", after))},
    }
    b = point["background"]
    runner.say(f"  {exp.name}: {b['reads_during']} reads during {b['consolidation_s']:.0f} s of consolidation "
               f"({len(commits)} commit(s)), p50 {b['latency_s']['during']['p50']:.2f} s / p95 "
               f"{b['latency_s']['during']['p95']:.2f} s (idle {b['latency_s']['idle']['p50']:.2f} / "
               f"{b['latency_s']['idle']['p95']:.2f})")
    tables(point)
    runner.save(results)


def consistent(read: dict[str, Any]) -> bool:
    """A read answered with versions that were active when it started or when it ended (never a version not yet
    committed, never one already replaced before it began)."""
    return all(v in (read["active_start"].get(m), read["active_end"].get(m)) for m, v in read["versions"].items())


def _pick(old: list[Any], new: list[Any], i: int) -> Any:
    """The i-th read's entry: old and remembered entries in turn, each list cycled."""
    return old[(i // 2) % len(old)] if i % 2 == 0 else new[(i // 2) % len(new)]


def _share(rows: list[dict[str, Any]]) -> float | None:
    return round(sum(r["metrics"]["correct"] for r in rows) / len(rows), 4) if rows else None


def tables(point: dict[str, Any]) -> None:
    r = point["remember"]
    out = [{"title": f"remember: {r['n']} one-sentence memories in a row (matmul {point['matmul_gflops']} GFLOP/s)",
            "columns": ["first call s", "p50 s", "p95 s", "max s", "remember + answer p50 s",
                        "remember + answer p95 s", "answer contains", "retrieved", "target p95"],
            "rows": [[r["first_s"], r["p50_s"], r["p95_s"], r["max_s"], r["answerable_p50_s"], r["answerable_p95_s"],
                      r["contains"], r["retrieved"], f"<= {r['target_p95_s']} s ({'met' if r['target_met'] else 'NOT met'})"]]}]
    b = point.get("background")
    if b:
        rows = [[name, v["n"], v["p50"], v["p95"], v["mean"], *(b["correct"][name][k] for k in
                                                              ("old", "pending", "consolidated"))]
                for name, v in b["latency_s"].items()]
        commits = ", ".join(f"{m} v{v} at {t} s" for t, m, v in b["commits"])
        out.append({"title": f"reads while a consolidator trains {point['task']['size']} entries into a namespace "
                             f"whose module v{b['old_version']} holds {point['task'].get('initial', '?')} "
                             f"(commits: {commits}; {b['handovers']} hand-overs; every read answered with a "
                             f"version active while it ran: {b['versions_consistent']})",
                    "columns": ["reads", "n", "p50 s", "p95 s", "mean s", "correct: old entries",
                                "correct: remembered, still pending", "correct: remembered, consolidated"],
                    "rows": rows})
    point["tables"] = out
