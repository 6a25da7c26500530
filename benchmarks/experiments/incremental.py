"""The ``incremental`` experiment: what a small write costs once a module holds many items.

1. ``full``: one write of the ``task.size`` PhoneBook entries into one module (the reference cost);
2. ``add one``: one more entry (from the same generator, past ``task.size``) written into that module once per
   value of ``options.replays`` (``train.replay_items``: held items replayed; null = all of them), each at its
   ``options.lr_scales`` value of ``train.warm_lr_scale``, one after the other, so the module holds ``size``,
   ``size + 1``, ... items. Per add: steps, tokens, seconds and their share of the full write's, the replay
   size, repair rounds, whether the full fallback round ran, items that slipped, and the recall of every held
   entry and of the new one, asked back by generation;
3. ``chunks``: the same ``task.size`` entries written into a fresh namespace as ``options.chunks`` writes of
   equal size with the experiment's ``train.replay_items``; the total seconds against the full write's, and
   every entry asked back at the end.

``results.json``: one point with ``full``, ``adds`` and ``chunks``, and ``tables`` for the report;
``samples.jsonl``: one row per write.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..config import IncrementalOptions

if TYPE_CHECKING:
    from ..runner import Runner


def _row(report: Any, **extra: Any) -> dict[str, Any]:
    replay = report.details.get("replay", {})
    return {"steps": report.steps, "tokens_trained": report.tokens_trained, "seconds": round(report.seconds, 2),
            "train_seconds": round(report.timings.get("train", 0.0), 2), "items": report.items_total,
            "write_recall": round(report.recall, 4), "reached_target": report.reached_target,
            "replayed": replay.get("replayed"), "repair_rounds": replay.get("repair_rounds"),
            "full_round": replay.get("full_round"), "check_seconds": replay.get("check_seconds"),
            "slipped": len(report.slipped), "missed": replay.get("missed"), "checks": replay.get("checks"),
            "kl_weight": report.details.get("preserve", {}).get("kl_weight"), **extra}


def run(runner: Runner, results: dict[str, Any]) -> None:
    from loramem.demo import measure_matmul
    from loramem.phonebook import phone_correct, phonebook

    exp, mem = runner.experiment, runner.mem
    assert mem is not None and isinstance(exp.options, IncrementalOptions)
    opts = exp.options
    n = exp.task.size
    everyone = phonebook(n + len(opts.replays), seed=exp.task.seed)
    facts, extra = everyone[:n], everyone[n:]
    point: dict[str, Any] = {"index": 0, "label": f"{n} entries, then one at a time, then {opts.chunks} chunks",
                             "overrides": {}, "task": {"name": "phonebook", "size": n, "seed": exp.task.seed},
                             "matmul_gflops": round(measure_matmul(seconds=2.0), 1), "full": None, "adds": [],
                             "chunks": None, "tables": []}
    results["points"].append(point)

    def recall(fs: list[Any], ns: str) -> float:
        answers = mem.ask([f.canonical_question for f in fs], namespace=ns)
        return round(sum(phone_correct(a.text, f.object) for a, f in zip(answers, fs)) / max(1, len(fs)), 4)

    def log(part: str, row: dict[str, Any]) -> None:
        runner.output.append([{"point": 0, "reader": part, **row}])
        runner.say(f"  {exp.name}: {part}: {row['steps']} steps, {row['tokens_trained']:,} tokens, "
                   f"{row['seconds']:.1f} s, recall {row.get('recall', row['write_recall']):.0%}")
        tables(point)
        runner.save(results)

    kw: dict[str, Any] = {"split": False, "lora": exp.lora, "synth": exp.synth}
    full = mem.write(facts, namespace="inc", module="inc.m", train=exp.train, **kw)
    point["full"] = _row(full, recall=recall(facts, "inc"))
    log("full", point["full"])
    held = list(facts)
    scales = opts.lr_scales or [exp.train.warm_lr_scale] * len(opts.replays)
    for replay, scale, fact in zip(opts.replays, scales, extra):
        train = dataclasses.replace(exp.train, replay_items=replay, warm_lr_scale=float(scale))
        rep = mem.write([fact], namespace="inc", module="inc.m", train=train, **kw)
        row = _row(rep, replay_items=replay, lr_scale=float(scale), new_recall=recall([fact], "inc"),
                   held_recall=recall(held, "inc"),
                   share_of_full_seconds=round(rep.seconds / full.seconds, 4),
                   share_of_full_tokens=round(rep.tokens_trained / max(1, full.tokens_trained), 4))
        row["recall"] = row["held_recall"]
        held.append(fact)
        point["adds"].append(row)
        log(f"add one (replay {replay if replay is not None else 'all'}, lr x {scale:g})", row)
    if opts.chunks:
        size = -(-n // opts.chunks)
        rows = []
        for c in range(opts.chunks):
            part = facts[c * size:(c + 1) * size]
            if part:
                rows.append(_row(mem.write(part, namespace="chunks", module="chunks.m", train=exp.train, **kw)))
        total = sum(r["seconds"] for r in rows)
        point["chunks"] = {"writes": rows, "seconds": round(total, 2), "tokens_trained": sum(r["tokens_trained"] for r in rows),
                           "steps": sum(r["steps"] for r in rows), "replay_items": exp.train.replay_items,
                           "recall": recall(facts, "chunks"), "ratio_to_full_seconds": round(total / full.seconds, 3)}
        log(f"{opts.chunks} chunks", {**point["chunks"], "write_recall": rows[-1]["write_recall"]})


def tables(point: dict[str, Any]) -> None:
    full = point["full"]
    rows = [["full write", full["items"], "-", "-", full["steps"], full["tokens_trained"], full["seconds"], "1.0",
             f"{full['recall']:.0%}", "-", "-", "-"]]
    rows += [["add one", a["items"], "all" if a["replay_items"] is None else a["replay_items"],
              f"{a.get('lr_scale', 1.0):g}", a["steps"], a["tokens_trained"], a["seconds"],
              f"{a['share_of_full_seconds']:.3f}", f"{a['held_recall']:.0%}", f"{a['new_recall']:.0%}", a["slipped"],
              "yes" if a.get("full_round") else "no"] for a in point["adds"]]
    if point["chunks"]:
        c = point["chunks"]
        rows.append([f"{len(c['writes'])} chunked writes", full["items"], c["replay_items"] or "all", "-", c["steps"],
                     c["tokens_trained"], c["seconds"], f"{c['ratio_to_full_seconds']:.3f}", f"{c['recall']:.0%}",
                     "-", sum(w["slipped"] for w in c["writes"]), sum(bool(w.get("full_round")) for w in c["writes"])])
    point["tables"] = [{"title": f"Incremental writes (matmul {point['matmul_gflops']} GFLOP/s; recall asked back "
                                 "by generation)",
                        "columns": ["write", "items held", "replay", "lr scale", "steps", "tokens", "seconds",
                                    "share of the full write's seconds", "recall (held)", "recall (new)",
                                    "slipped at commit", "full round"], "rows": rows}]
