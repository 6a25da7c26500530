"""The ``write_recipes`` experiment: write recipes side by side on the same PhoneBook, for tokens to recall.

Every recipe (``WriteRecipesOptions.recipes``: a name and its overrides of the experiment's ``train``,
``lora`` and ``synth`` sections) writes the same ``task.size`` entries (same seed) into its own namespace of one
store, one after the other in one process, ``options.repeats`` times in turn (A B C, B C A, ... so a slow spell
hits every recipe). Per write: steps, trained tokens, write seconds (synthesis + training + checks + save),
training tokens/s and the matmul rate measured just before it (2 s of square fp32 matmuls). After each write
the entries are asked back by generation: the trained canonical question (``recall``) and the held-out
paraphrase no recipe trains on (``heldout``), scored like the PhoneBook task (the digits, in order).

``results.json``: one point whose ``recipes`` hold each recipe's medians over the repeats (and every write),
its ratio of trained tokens and of seconds to the first recipe (today's), and ``tables`` for the report;
``samples.jsonl``: one row per recipe x repeat.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from loramem import LoraSpec, SynthConfig, TrainConfig

from ..config import WriteRecipesOptions

if TYPE_CHECKING:
    from ..runner import Runner


def recipe_configs(exp: Any, overrides: dict[str, Any]) -> tuple[TrainConfig, LoraSpec, SynthConfig]:
    """The experiment's train / lora / synth sections with one recipe's overrides on top."""
    return (TrainConfig.from_dict({**exp.train.to_dict(), **overrides.get("train", {})}),
            LoraSpec.from_dict({**exp.lora.to_dict(), **overrides.get("lora", {})}),
            SynthConfig.from_dict({**exp.synth.to_dict(), **overrides.get("synth", {})}))


def rotations(names: list[str], repeats: int) -> list[str]:
    """A B C, B C A, C A B, ...: each recipe ``repeats`` times, never always first."""
    return [names[(r + i) % len(names)] for r in range(repeats) for i in range(len(names))]


def run(runner: Runner, results: dict[str, Any]) -> None:
    from loramem.demo import measure_matmul
    from loramem.phonebook import phone_correct, phonebook
    from loramem.synth.templates import HELDOUT_QA_TEMPLATE

    exp, mem = runner.experiment, runner.mem
    assert mem is not None and isinstance(exp.options, WriteRecipesOptions)
    opts = exp.options
    facts = phonebook(exp.task.size, seed=exp.task.seed)
    questions = [f.canonical_question for f in facts]
    heldout = [f.fill(HELDOUT_QA_TEMPLATE) for f in facts]
    gold = [f.object for f in facts]
    names = list(opts.recipes)
    point: dict[str, Any] = {"index": 0, "label": f"{len(facts)} entries, {len(names)} recipes x {opts.repeats}",
                             "overrides": {}, "task": {"name": "phonebook", "size": exp.task.size,
                                                       "seed": exp.task.seed}, "recipes": {}, "tables": []}
    results["points"].append(point)
    writes: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for turn, name in enumerate(rotations(names, opts.repeats)):
        train, lora, synth = recipe_configs(exp, opts.recipes[name])
        rate = measure_matmul(seconds=2.0)
        ns = f"r{turn}"
        report = mem.write(facts, namespace=ns, module=f"{ns}.m", split=False, lora=lora, train=train, synth=synth)
        answers = mem.ask(questions + heldout, namespace=ns)
        hits = [phone_correct(a.text, g) for a, g in zip(answers, gold + gold)]
        row = {"recipe": name, "turn": turn, "steps": report.steps, "tokens_trained": report.tokens_trained,
               "epochs": round(report.epochs, 2), "seconds": round(report.seconds, 2),
               "train_seconds": round(report.timings.get("train", 0.0), 2),
               "check_seconds": round(report.timings.get("recall_checks", 0.0), 2),
               "preserve_seconds": round(report.timings.get("preserve_setup", 0.0), 2),
               "tokens_per_second": round(report.tokens_per_second, 1), "matmul_gflops": round(rate, 1),
               "write_recall": round(report.recall, 4), "reached_target": report.reached_target,
               "recall": round(sum(hits[: len(gold)]) / len(gold), 4),
               "heldout": round(sum(hits[len(gold):]) / len(gold), 4)}
        writes[name].append(row)
        runner.output.append([{"point": 0, "reader": name, **row}])
        runner.say(f"  {exp.name}: {name} (turn {turn}): {row['steps']} steps, {row['tokens_trained']:,} tokens, "
                   f"{row['seconds']:.0f} s, recall {row['recall']:.0%}, held-out {row['heldout']:.0%} "
                   f"(matmul {rate:.0f} GFLOP/s)")
        mem.forget_namespace(ns)  # one module in the store at a time: the next write starts from the same store
        summarise(point, writes, names)
        runner.save(results)


KEYS = ("steps", "tokens_trained", "seconds", "train_seconds", "tokens_per_second", "recall", "heldout",
        "matmul_gflops")


def summarise(point: dict[str, Any], writes: dict[str, list[dict[str, Any]]], names: list[str]) -> None:
    """Per recipe: medians over its writes so far, and ratios of tokens and seconds to the first recipe."""
    done = [n for n in names if writes[n]]
    med = {n: {k: round(statistics.median(w[k] for w in writes[n]), 4) for k in KEYS} for n in done}
    first = med.get(names[0])
    for n in done:
        m = med[n]
        if first:
            m["tokens_vs_first"] = round(first["tokens_trained"] / max(1, m["tokens_trained"]), 2)
            m["seconds_vs_first"] = round(first["seconds"] / max(1e-9, m["seconds"]), 2)
        point["recipes"][n] = {"median": m, "writes": writes[n]}
    point["tables"] = [{
        "title": "Write recipes (medians over the repeats; x = first recipe's figure / this one's)",
        "columns": ["recipe", "steps", "tokens", "fewer tokens", "seconds", "faster", "tokens/s", "recall",
                    "held-out", "matmul GFLOP/s"],
        "rows": [[n, med[n]["steps"], int(med[n]["tokens_trained"]), f"{med[n].get('tokens_vs_first', 1.0)}x",
                  med[n]["seconds"], f"{med[n].get('seconds_vs_first', 1.0)}x", med[n]["tokens_per_second"],
                  f"{med[n]['recall']:.0%}", f"{med[n]['heldout']:.0%}", med[n]["matmul_gflops"]] for n in done],
    }]
