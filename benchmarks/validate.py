"""What is wrong with a run's outputs: ``validate_run(out)`` returns the problems (empty when valid).

Every kind: both files parse, the run finished without errors, and the provenance is there (config, versions,
commit, machine, timings; for runs since the load readings, both readings and the contention verdict).
Then per kind: every figure is finite and in range, and the summaries in ``results.json`` agree with the
rows of ``samples.jsonl``.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import expand_grid
from .output import RunOutput, read_samples

# Metrics are in [0, 1] unless listed here (or named with a unit suffix, which only needs to be >= 0).
METRIC_RANGES: dict[str, tuple[float, float]] = {"judge_score": (0.0, 10.0)}
_UNBOUNDED_SUFFIXES = ("_tokens", "_s", "_count")
POSITIVE = (0.0, math.inf)


def metric_range(name: str) -> tuple[float, float]:
    if name in METRIC_RANGES:
        return METRIC_RANGES[name]
    if name.endswith(_UNBOUNDED_SUFFIXES):
        return POSITIVE
    return (0.0, 1.0)


def finite_in_range(name: str, value: Any, bounds: tuple[float, float] | None = None) -> str | None:
    lo, hi = bounds or metric_range(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"{name}={value!r} is not a finite number"
    if not lo <= value <= hi:
        return f"{name}={value} is outside [{lo}, {hi}]"
    return None


def validate_run(out: str | os.PathLike[str]) -> list[str]:
    """Every problem with the run in ``out`` (see the module docstring); empty when it is valid."""
    run = RunOutput(Path(out))
    try:
        import json

        results = json.loads(run.results.read_text(encoding="utf-8"))
        samples = read_samples(run.samples)
    except (OSError, ValueError) as exc:
        return [f"unreadable run: {exc}"]
    problems = [f"error: {e}" for e in results.get("errors", [])]
    if not str(results.get("status", "")).startswith("finished"):
        problems.append(f"status is {results.get('status')!r}, expected 'finished'")
    for key in ("config", "versions", "git", "machine", "started", "finished", "seconds"):
        if results.get(key) is None:
            problems.append(f"results.json lacks {key!r}")
    problems += _check_load(results)
    kind = results.get("kind", "readers")
    check = VALIDATORS.get(kind)
    if check is None:
        return [*problems, f"kind {kind!r} is not one of {sorted(VALIDATORS)}"]
    return problems + check(results, samples)


def _check_load(results: dict[str, Any]) -> list[str]:
    """The two readings and the verdict (runs made before the readings existed have no ``load``)."""
    if "load" not in results:
        return []
    problems = []
    for when in ("start", "end"):
        reading = (results["load"] or {}).get(when)
        if not isinstance(reading, dict):
            problems.append(f"load: no {when} reading")
            continue
        bad = finite_in_range(f"load.{when}.matmul_gflops", reading.get("matmul_gflops"), (1e-9, math.inf))
        if bad:
            problems.append(bad)
    if not isinstance(results.get("contended"), bool):
        problems.append(f"contended is {results.get('contended')!r}, expected true or false")
    elif results["contended"] != bool(results.get("contention")):
        problems.append("contended disagrees with the reasons listed in contention")
    return problems


def _count(samples: list[dict[str, Any]]) -> Counter[tuple[int, str]]:
    return Counter((s.get("point", 0), s.get("reader", "")) for s in samples)


def _check_sample_metrics(samples: list[dict[str, Any]]) -> list[str]:
    problems = []
    for s in samples:
        for name, value in s.get("metrics", {}).items():
            bad = finite_in_range(name, value)
            if bad:
                problems.append(f"sample point {s.get('point')} {s.get('reader')} {s.get('question_id')}: {bad}")
    return problems


def _check_reader(where: str, name: str, agg: dict[str, Any], n_samples: int, primary: str,
                  needs: tuple[str, ...]) -> list[str]:
    """One reader's summary against its samples: a count that agrees, the primary metric, every value in range."""
    if not agg.get("n"):
        return [f"{where}: reader {name} has no samples"]
    problems = []
    if n_samples != agg["n"]:
        problems.append(f"{where}: reader {name} reports n={agg['n']} but samples.jsonl has {n_samples}")
    if primary not in agg.get("metrics", {}):
        problems.append(f"{where}: reader {name} lacks the primary metric {primary!r}")
    for metric, value in agg.get("metrics", {}).items():
        bad = finite_in_range(metric, value)
        if bad:
            problems.append(f"{where} {name}: {bad}")
    for key in needs:
        bad = finite_in_range(key, agg.get(key), POSITIVE)
        if bad:
            problems.append(f"{where} {name}: {bad}")
    return problems


def validate_readers(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Every point x reader has samples, every metric is finite and in range, the aggregates agree."""
    problems = _check_sample_metrics(samples)
    readers = results.get("config", {}).get("readers", [])
    expected_points = len(expand_grid(results.get("config", {}).get("grid", {})))
    if len(results.get("points", [])) != expected_points:
        problems.append(f"{len(results.get('points', []))} points measured, expected {expected_points}")
    counts = _count(samples)
    for p in results.get("points", []):
        where = f"point {p['index']} ({p['label']})"
        if "error" in p:
            continue  # listed with the errors
        if p.get("write") is not None:
            for name, bounds in (("recall", (0.0, 1.0)), ("seconds", POSITIVE)):
                bad = finite_in_range(name, p["write"].get(name), bounds)
                if bad:
                    problems.append(f"{where} write: {bad}")
        for r in readers:
            agg = p.get("readers", {}).get(r)
            if agg is None:
                problems.append(f"{where}: reader {r} missing")
                continue
            problems += _check_reader(where, r, agg, counts.get((p["index"], r), 0), p["task"]["primary"],
                                      ("latency_s", "peak_rss_mb"))
    return problems


def validate_modules(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Every section's answers are in samples.jsonl, figures in range, the throughput summary agrees with its
    repeats, and the update/delete section is there when changes were asked for."""
    problems = _check_sample_metrics(samples)
    points = results.get("points", [])
    if len(points) != 1:
        return [*problems, f"{len(points)} points, expected 1"]
    p, options = points[0], results.get("config", {}).get("options") or {}
    counts = _count(samples)
    if not p.get("readers"):
        problems.append("no reader sections")
    for name, agg in p.get("readers", {}).items():
        problems += _check_reader("modules", name, agg, counts.get((0, name), 0), "correct", ())
    named = {name for _, name in counts}
    if named - set(p.get("readers", {})):
        problems.append(f"samples.jsonl has sections results.json lacks: {sorted(named - set(p['readers']))}")
    for name, w in p.get("writes", {}).items():
        for key, bounds in (("recall", (0.0, 1.0)), ("seconds", POSITIVE), ("steps", (1, math.inf))):
            bad = finite_in_range(key, w.get(key), bounds)
            if bad:
                problems.append(f"write {name}: {bad}")
    # Runs made before `parts` existed ran every part but selection.
    parts = options.get("parts", ["budget", "throughput", "merging", "update_delete"])
    writes = options.get("modules", 0) + ("budget" in parts)
    if len(p.get("writes", {})) != writes:
        problems.append(f"{len(p.get('writes', {}))} writes, expected {writes}")
    if "throughput" in parts:
        problems += _check_throughput(p.get("throughput"), options.get("throughput_repeats"))
    tried = {(m["modules"], m["method"]) for m in p.get("merging", [])}
    wanted = {(n, m) for n in range(2, options.get("modules", 0) + 1) for m in options.get("merge_methods", [])}
    if "merging" in parts and tried != wanted:
        problems.append(f"merging: measured {sorted(tried)}, expected {sorted(wanted)}")
    if "selection" in parts:
        problems += _check_selection(p.get("selection"), options, samples)
    ud = p.get("update_delete")
    if "update_delete" in parts and options.get("changes"):
        if not ud:
            problems.append("update_delete missing")
        else:
            for key, value in ud.get("generated_correct", {}).items():
                bad = finite_in_range(f"update_delete {key}", value, (0.0, 1.0))
                if bad:
                    problems.append(bad)
            for op in ("forget", "update"):
                bad = finite_in_range(f"update_delete.{op}.seconds", (ud.get(op) or {}).get("seconds"), POSITIVE)
                if bad:
                    problems.append(bad)
    return problems


def _check_selection(sel: dict[str, Any] | None, options: dict[str, Any],
                     samples: list[dict[str, Any]]) -> list[str]:
    """Every way of the selection part was read, and its shares agree with its per-question samples."""
    if not sel:
        return ["selection missing"]
    k = min(options.get("select_top_k", 3), options.get("modules", 0))
    wanted = ["selection: oracle", "selection: embedding top-1", f"selection: embedding top-{k} select",
              f"selection: embedding top-{k} select, no margin"] + [
        f"selection: embedding top-{k} merge {m}" for m in options.get("select_merge_methods", [])]
    ways = sel.get("ways") or {}
    problems = [] if sorted(ways) == sorted(wanted) else [f"selection: ways {sorted(ways)}, expected {sorted(wanted)}"]
    for name in set(ways) & set(wanted):
        rows = [s.get("metrics", {}) for s in samples if s.get("reader") == name]
        keys = ("correct", "route_correct") + (() if " merge " in name else ("selected_correct",))
        for key in keys:
            values = [r[key] for r in rows if key in r]
            if not rows or len(values) != len(rows):
                problems.append(f"selection {name}: {key} missing from samples.jsonl")
            elif abs(ways[name].get(key, -1) - sum(values) / len(values)) > 1e-3:
                problems.append(f"selection {name}: {key} {ways[name].get(key)} disagrees with samples.jsonl")
        given = ways[name].get("selected_given_routed")
        if given is not None and finite_in_range("selected_given_routed", given) is not None:
            problems.append(f"selection {name}: selected_given_routed={given} is outside [0, 1]")
    return problems


def _check_throughput(t: dict[str, Any] | None, repeats: int | None) -> list[str]:
    if not t:
        return ["throughput missing"]
    problems = []
    for side in ("mixed_batch", "module_by_module"):
        s = t.get(side) or {}
        values = s.get("values", [])
        if len(values) != repeats:
            problems.append(f"throughput {side}: {len(values)} timings, expected {repeats}")
            continue
        for v in values:
            bad = finite_in_range(f"throughput {side}", v, (1e-9, math.inf))
            if bad:
                problems.append(bad)
        if values and (abs(s.get("median", -1) - statistics.median(values)) > 1e-3
                       or s.get("min") != min(values) or s.get("max") != max(values)):
            problems.append(f"throughput {side}: median/min/max disagree with its timings")
    if not problems:
        ratio = t["mixed_batch"]["median"] / t["module_by_module"]["median"]
        if abs(t.get("ratio_of_medians", -1) - ratio) > 2e-3:
            problems.append(f"throughput: ratio_of_medians {t.get('ratio_of_medians')} is not {ratio:.3f}")
    return problems


def validate_write_throughput(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Both loops ran every step, their summaries agree with the per-step rows, every figure is positive."""
    points = results.get("points", [])
    if len(points) != 1:
        return [f"{len(points)} points, expected 1"]
    p, options = points[0], results.get("config", {}).get("options") or {}
    problems = []
    counts = _count(samples)
    for loop in ("loramem", "trainer+peft"):
        agg = (p.get("loops") or {}).get(loop)
        if agg is None:
            problems.append(f"loop {loop} missing")
            continue
        if not agg.get("steps") or agg["steps"] != options.get("steps") or counts.get((0, loop), 0) != agg["steps"]:
            problems.append(f"loop {loop}: {agg.get('steps')} steps in results.json, {counts.get((0, loop), 0)} in "
                            f"samples.jsonl, expected {options.get('steps')}")
        rows = [s for s in samples if s.get("reader") == loop]
        if sum(r.get("real_tokens", 0) for r in rows) != agg.get("real_tokens"):
            problems.append(f"loop {loop}: real_tokens disagrees with samples.jsonl")
        for key in ("seconds", "examples_per_second", "real_tokens_per_second", "share_of_matmul_rate",
                    "median_step_seconds"):
            bad = finite_in_range(f"{loop} {key}", agg.get(key), (1e-9, math.inf))
            if bad:
                problems.append(bad)
        for r in rows:
            bad = finite_in_range(f"{loop} step {r.get('step')} seconds", r.get("seconds"), (1e-9, math.inf))
            if bad:
                problems.append(bad)
    if not problems:
        ratio = p["loops"]["loramem"]["examples_per_second"] / p["loops"]["trainer+peft"]["examples_per_second"]
        if abs(p.get("ratio_examples_per_second", -1) - ratio) > 2e-3:
            problems.append(f"ratio_examples_per_second {p.get('ratio_examples_per_second')} is not {ratio:.3f}")
    return problems


def validate_write_recipes(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Every recipe wrote ``repeats`` times (results.json and samples.jsonl agree), its figures in range."""
    points = results.get("points", [])
    if len(points) != 1:
        return [f"{len(points)} points, expected 1"]
    options = results.get("config", {}).get("options") or {}
    recipes, repeats = list(options.get("recipes") or {}), options.get("repeats", 1)
    got = points[0].get("recipes") or {}
    problems = []
    for name in recipes:
        writes = (got.get(name) or {}).get("writes", [])
        rows = [s for s in samples if s.get("reader") == name]
        if len(writes) != repeats or len(rows) != repeats:
            problems.append(f"recipe {name}: {len(writes)} writes in results.json, {len(rows)} in samples.jsonl, "
                            f"expected {repeats}")
        for w in writes:
            for key, lo_hi in (("recall", (0.0, 1.0)), ("heldout", (0.0, 1.0)), ("seconds", (1e-9, math.inf)),
                               ("tokens_trained", (1, math.inf))):
                bad = finite_in_range(f"{name} {key}", w.get(key), lo_hi)
                if bad:
                    problems.append(bad)
    return problems


def validate_incremental(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """The full write, one add per replay size and the chunked writes are all there, recalls in [0, 1]."""
    points = results.get("points", [])
    if len(points) != 1:
        return [f"{len(points)} points, expected 1"]
    p, options = points[0], results.get("config", {}).get("options") or {}
    problems = []
    if not p.get("full"):
        problems.append("the full write is missing")
    if len(p.get("adds") or []) != len(options.get("replays") or []):
        problems.append(f"{len(p.get('adds') or [])} single-item adds, expected one per replay size")
    if options.get("chunks") and not p.get("chunks"):
        problems.append("the chunked writes are missing")
    expected = 1 + len(options.get("replays") or []) + (1 if options.get("chunks") else 0)
    if len(samples) != expected:
        problems.append(f"{len(samples)} rows in samples.jsonl, expected {expected}")
    for row in [p.get("full") or {}, *(p.get("adds") or []), p.get("chunks") or {}]:
        for key in ("recall", "held_recall", "new_recall"):
            if key in row:
                bad = finite_in_range(key, row[key], (0.0, 1.0))
                if bad:
                    problems.append(bad)
    return problems


def validate_natural_questions(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """The write is there, every section's answers are in samples.jsonl and its share agrees with them, the set's
    questions (and the base model, when asked) were asked twice per memory, and the summary agrees."""
    problems = _check_sample_metrics(samples)
    points = results.get("points", [])
    if len(points) != 1:
        return [*problems, f"{len(points)} points, expected 1"]
    p, options = points[0], results.get("config", {}).get("options") or {}
    w = p.get("write") or {}
    for key, bounds in (("recall", (0.0, 1.0)), ("seconds", POSITIVE), ("steps", (1, math.inf))):
        bad = finite_in_range(key, w.get(key), bounds)
        if bad:
            problems.append(f"write: {bad}")
    readers, counts = p.get("readers", {}), _count(samples)
    wanted = ["lora: set questions"] + (["base: set questions"] if options.get("base", True) else [])
    problems += [f"section {name} missing" for name in wanted if name not in readers]
    for name, agg in readers.items():
        problems += _check_reader("natural_questions", name, agg, counts.get((0, name), 0), "contains", ("latency_s",))
        rows = [s["metrics"].get("contains", -1) for s in samples if s.get("reader") == name]
        if rows and abs(agg.get("metrics", {}).get("contains", -1) - sum(rows) / len(rows)) > 1e-3:
            problems.append(f"section {name}: contains {agg['metrics'].get('contains')} disagrees with samples.jsonl")
        if name.endswith("set questions") and agg.get("n") != 2 * p.get("task", {}).get("size", -1):
            problems.append(f"section {name}: n={agg.get('n')}, expected 2 questions per memory")
    named = {name for _, name in counts}
    if named - set(readers):
        problems.append(f"samples.jsonl has sections results.json lacks: {sorted(named - set(readers))}")
    summary = p.get("summary") or {}
    share = (readers.get("lora: set questions") or {}).get("metrics", {}).get("contains")
    if share is not None and summary.get("target_met") != (share >= summary.get("target", math.inf)):
        problems.append("summary: target_met disagrees with the set questions' share and the target")
    return problems


def validate_short_term(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Both parts are there, their counts agree with samples.jsonl, latencies are positive and ordered, shares
    are shares, and the verdicts agree with the reads they summarise."""
    problems = _check_sample_metrics(samples)
    points = results.get("points", [])
    if len(points) != 1:
        return [*problems, f"{len(points)} points, expected 1"]
    p = points[0]
    r, b = p.get("remember") or {}, p.get("background") or {}
    if not r or not b:
        return [*problems, "remember or background part missing"]
    by = {name: [s for s in samples if s.get("reader") == name] for name in ("remember", "idle", "during", "after")}
    if r.get("n") != len(by["remember"]):
        problems.append(f"remember: n={r.get('n')} but {len(by['remember'])} rows in samples.jsonl")
    for key in ("p50_s", "p95_s", "answerable_p95_s"):
        bad = finite_in_range(key, r.get(key), POSITIVE)
        if bad:
            problems.append(f"remember: {bad}")
    if r.get("p50_s", 0) > r.get("p95_s", 0) + 1e-9 or r.get("p95_s", 0) > r.get("max_s", 0) + 1e-9:
        problems.append("remember: p50 <= p95 <= max does not hold")
    if r.get("target_met") != (r.get("p95_s", math.inf) <= r.get("target_p95_s", -1)):
        problems.append("remember: target_met disagrees with p95 and the target")
    lat = b.get("latency_s") or {}
    for name in ("idle", "during", "after"):
        row = lat.get(name) or {}
        n_rows = len(by[name]) if name != "during" else sum(bool(s.get("before_commit")) for s in by["during"])
        if row.get("n") != n_rows:
            problems.append(f"background {name}: n={row.get('n')} but {n_rows} reads in samples.jsonl")
        if row.get("n") and row.get("p50", 0) > row.get("p95", 0) + 1e-9:
            problems.append(f"background {name}: p50 > p95")
    reads = by["during"] + by["after"]
    if b.get("versions_consistent") != all(
            all(v in ((s.get("active_start") or {}).get(m), (s.get("active_end") or {}).get(m))
                for m, v in (s.get("versions") or {}).items()) for s in reads):
        problems.append("background: versions_consistent disagrees with the reads")
    commits = b.get("commits") or []
    if not commits or b.get("consolidation_s") != max(c[0] for c in commits):
        problems.append("background: consolidation_s is not the last commit's time")
    for part in (b.get("correct") or {}).values():
        for value in part.values():
            bad = None if value is None else finite_in_range("correct", value, (0.0, 1.0))
            if bad:
                problems.append(f"background: {bad}")
    return problems


VALIDATORS: dict[str, Callable[[dict[str, Any], list[dict[str, Any]]], list[str]]] = {
    "readers": validate_readers, "modules": validate_modules, "write_throughput": validate_write_throughput,
    "write_recipes": validate_write_recipes, "incremental": validate_incremental,
    "natural_questions": validate_natural_questions, "short_term": validate_short_term,
}
