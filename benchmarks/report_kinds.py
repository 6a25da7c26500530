"""Report sections for the ``modules``, ``write_throughput`` and ``natural_questions`` experiments, and for the
one result folder left in the format of the old stand-alone script (``results/modules-phonebook`` before it was
rerun)."""

from __future__ import annotations

from typing import Any

from .report import _fmt, _table

OLD_FORMAT = ("**Old format**: written by the stand-alone `python -m benchmarks.modules` script before it became "
              "the `modules` experiment of the runner (`python -m benchmarks run modules-phonebook`). Its "
              "mixed-batch throughput ratio is withdrawn: it was the better of two mixed-batch passes against a "
              "single module-by-module pass.")


def kind_section(results: dict[str, Any]) -> list[str]:
    if results.get("kind") == "write_throughput":
        return write_throughput_section(results)
    if results.get("kind") in ("write_recipes", "incremental", "short_term"):
        return tables_section(results)
    if results.get("kind") == "natural_questions":
        return natural_questions_section(results)
    if "benchmark" in results and "kind" not in results:
        return [OLD_FORMAT, "", *_modules_tables(_from_old(results))]
    points = results.get("points") or [{}]
    return _modules_tables(points[0])


def _from_old(results: dict[str, Any]) -> dict[str, Any]:
    """The old script's sections in the shape of the ``modules`` experiment's point (throughput left out)."""
    readers = {name: {"n": r.get("n"), "metrics": {"correct": r.get("accuracy")},
                      "latency_s": r.get("seconds_per_question"), "peak_rss_mb": r.get("peak_rss_mb"),
                      "routing": r.get("routing")}
               for name, r in results.get("readers", {}).items()}
    merging = [{**m, "correct": m.get("accuracy")} for m in results.get("merging", [])]
    ud = dict(results.get("update_delete") or {})
    if "generated_accuracy" in ud:
        ud["generated_correct"] = ud.pop("generated_accuracy")
    old = results.get("throughput") or {}
    return {"readers": readers, "writes": results.get("writes", {}), "merging": merging, "update_delete": ud,
            "throughput": None, "old_throughput": old}


def _modules_tables(p: dict[str, Any]) -> list[str]:
    lines = ["### Writes", "",
             _table(["module", "items", "steps", "seconds", "recall", "trainable params"],
                    [[name, w.get("items"), w.get("steps"), w.get("seconds"), w.get("recall"), w.get("trainable_params")]
                     for name, w in p.get("writes", {}).items()]), ""]
    readers = {n: r for n, r in p.get("readers", {}).items() if not n.startswith(("merge ", "after ", "selection: "))}
    lines += ["### Readers on every entry", "",
              _table(["reader", "n", "correct", "routing top-1", "s/question", "peak RSS MB"],
                     [[n, r.get("n"), r.get("metrics", {}).get("correct"), _top1(r.get("routing")), r.get("latency_s"),
                       _fmt(r.get("peak_rss_mb"), 0)] for n, r in readers.items()]), ""]
    sel = p.get("selection")
    if sel:
        lines += [f"### Selection against merging (top-{sel['top_k']}): routing, selection and answers", "",
                  _table(["way", "route correct", "selected correct", "selected when routed right", "correct"],
                         [[n, w.get("route_correct"), w.get("selected_correct", "-"), w.get("selected_given_routed"),
                           w.get("correct")] for n, w in sel["ways"].items()]), ""]
    t = p.get("throughput")
    if t:
        lines += [f"### Read throughput ({t['unit']}, {t['questions']} questions, {t['repeats']} interleaved "
                  "timings a side)", "",
                  _table(["pass", "median", "min", "max", "timings"],
                         [[side, t[side]["median"], t[side]["min"], t[side]["max"],
                           ", ".join(f"{v:.2f}" for v in t[side]["values"])]
                          for side in ("mixed_batch", "module_by_module")]), "",
                  f"Ratio of the medians (mixed / module by module): {t['ratio_of_medians']:.3f}", ""]
    elif p.get("old_throughput"):
        old = p["old_throughput"]
        lines += ["### Read throughput (withdrawn)", "",
                  f"Timings in questions/s: mixed batch {old.get('mixed_batch')}, module by module "
                  f"{old.get('module_by_module')}. The old ratio ({old.get('ratio_mixed_over_module_by_module')}) "
                  "took the better of two mixed passes against one module-by-module pass; it is not a measurement "
                  "of the difference. Rerun: `python -m benchmarks run modules-phonebook`.", ""]
    if p.get("merging"):
        lines += ["### Merging (the first n modules, asked their entries)", "",
                  _table(["modules", "method", "correct", "n", "seconds"],
                         [[m.get("modules"), m.get("method"), m.get("correct", m.get("error")), m.get("n"),
                           m.get("seconds")] for m in p["merging"]]), ""]
    ud = p.get("update_delete")
    if ud:
        verify = {op: (ud.get(op) or {}).get("verify") or {} for op in ("forget", "update")}
        lines += [f"### Update and delete ({ud.get('changes')} entries each)", "",
                  _table(["answers after the change", "correct"], [[k, v] for k, v in ud.get("generated_correct", {}).items()]),
                  "", f"- forget: {_fmt(ud['forget'].get('seconds'), 1)} s, verified: {verify['forget'].get('passed')}; "
                  f"update: {_fmt(ud['update'].get('seconds'), 1)} s, verified: {verify['update'].get('passed')}; "
                  f"rewriting every module: {_fmt(ud.get('rewrite_all_modules_seconds'), 1)} s", ""]
    return lines


def _top1(routing: Any) -> Any:
    return routing.get("top1") if isinstance(routing, dict) else routing


def tables_section(results: dict[str, Any]) -> list[str]:
    """The ``tables`` a point carries (title, columns, rows), as the experiment laid them out."""
    points = results.get("points") or []
    tables = points[0].get("tables") if points else None
    if not tables:
        return ["(no measurement)"]
    lines: list[str] = []
    for t in tables:
        lines += [f"### {t['title']}", "", _table(t["columns"], t["rows"]), ""]
    return lines


def write_throughput_section(results: dict[str, Any]) -> list[str]:
    points = results.get("points") or []
    if not points or not points[0].get("loops"):
        return ["(no measurement)"]
    p = points[0]
    rows = [[name, lp["seconds"], lp["examples_per_second"], lp["real_tokens_per_second"], lp["median_step_seconds"],
             f"{lp['share_of_matmul_rate']:.0%}"] for name, lp in p["loops"].items()]
    lines = [f"### Write loop: {p['label']} (matmul rate at the start of the run: {p['matmul_gflops']} GFLOP/s)", "",
             _table(["write loop", "seconds", "examples/s", "real tokens/s", "median step s",
                     "share of matmul rate (4 x params FLOPs/token)"], rows), ""]
    if "ratio_examples_per_second" in p:
        lines += [f"loramem / baseline, examples per second: {p['ratio_examples_per_second']:.2f}x", ""]
    return lines


def natural_questions_section(results: dict[str, Any]) -> list[str]:
    points = results.get("points") or []
    if not points or not points[0].get("readers"):
        return ["(no measurement)"]
    p = points[0]
    w = p.get("write") or {}
    kinds = sorted({k for r in p["readers"].values() for k in r.get("by_kind", {})})
    rows = [[name, r.get("n"), r["metrics"].get("contains"),
             *(_fmt(r.get("by_kind", {}).get(k, {}).get("metrics", {}).get("contains")) for k in kinds),
             r.get("latency_s")] for name, r in p["readers"].items()]
    summary = p.get("summary") or {}
    met = "met" if summary.get("target_met") else "NOT met"
    return [f"### {p['label']}: the reply contains the answer", "",
            _table(["section", "n", "contains", *kinds, "s/question"], rows), "",
            f"Target: {_fmt(summary.get('target'))} of the set's questions ({met}).", "",
            f"- write: {w.get('steps')} steps, {w.get('tokens_trained')} tokens, {_fmt(w.get('seconds'), 1)} s, recall "
            f"{_fmt(w.get('recall'))} ({'reached' if w.get('reached_target') else 'did not reach'} the target), "
            f"{w.get('examples_trained')} trained examples (" + ", ".join(f"{k} {v}" for k, v in (w.get("examples") or {}).items())
            + f"), {w.get('modules')} module(s)", ""]
