"""The report step: results.json files in, ``REPORT.md`` with Markdown tables and PNG plots out.

Tables: one row per point x reader (primary metric, per-kind breakdown, latency, peak memory, write cost),
then every metric's mean. Plots (matplotlib, Agg backend, one figure each):

- ``readers``: the primary metric per reader, grouped by point;
- ``kinds``: the primary metric per question kind and reader, for points with more than one kind;
- ``capacity`` and ``efficiency``: when the grid varies ``lora.r`` and a size (``task.size`` or
  ``task.options.tokens``), recall of the lora reader against knowledge size (one line per rank, log x),
  and the largest size recalled >= 90% per trainable parameter (one bar per rank, log y).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SIZE_KEYS = ("task.size", "task.options.tokens")
SATURATION = 0.9  # recall at or above this counts as "holds the knowledge"
METRIC_ORDER = ("correct", "lp_correct", "exact", "normalised", "contains", "f1", "bleu4", "rougeL", "judge_score")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join((c if isinstance(c, str) else _fmt(c)).replace("|", "\\|") for c in row) + " |"
              for row in rows]
    return "\n".join(lines)


def _primary(point: dict[str, Any]) -> str:
    return str(point.get("task", {}).get("primary", "correct"))


def _readers(results: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for p in results.get("points", []):
        seen += [r for r in p.get("readers", {}) if r not in seen]
    return seen


# --- tables ------------------------------------------------------------------------------------------------------


def point_table(results: dict[str, Any]) -> str:
    """One row per point x reader: the primary metric, per kind, latency, memory and what the write cost."""
    rows = []
    for p in results.get("points", []):
        primary, write = _primary(p), p.get("write") or {}
        if "error" in p:
            rows.append([p.get("label", ""), "-", 0, primary, "error", p["error"][:80], "-", "-", "-", "-", "-"])
        for name, agg in p.get("readers", {}).items():
            if "error" in agg:
                rows.append([p.get("label", ""), name, 0, primary, "error", agg["error"][:80], "-", "-", "-", "-", "-"])
                continue
            kinds = agg.get("by_kind", {})
            by_kind = ", ".join(f"{k} {_fmt(v['metrics'].get(primary))}" for k, v in kinds.items()) if len(kinds) > 1 else ""
            lora = name.startswith("lora")
            rows.append([
                p.get("label", ""), name, agg.get("n"), primary, agg.get("metrics", {}).get(primary), by_kind,
                agg.get("latency_s"), _fmt(agg.get("peak_rss_mb"), 0),
                write.get("seconds") if lora else None, write.get("trainable_params") if lora else None,
                write.get("recall") if lora else None,
            ])
    header = ["point", "reader", "n", "metric", "value", "by kind", "latency s/q", "peak RSS MB", "write s",
              "trainable params", "recall at write"]
    return _table(header, rows)


def metrics_table(results: dict[str, Any]) -> str:
    """Every metric's mean per point x reader (columns: the usual ones first, then any others)."""
    names: list[str] = []
    for p in results.get("points", []):
        for agg in p.get("readers", {}).values():
            names += [m for m in agg.get("metrics", {}) if m not in names]
    names = [m for m in METRIC_ORDER if m in names] + sorted(m for m in names if m not in METRIC_ORDER)
    rows = [
        [p.get("label", ""), name, *[agg.get("metrics", {}).get(m) for m in names]]
        for p in results.get("points", []) for name, agg in p.get("readers", {}).items()
    ]
    return _table(["point", "reader", *names], rows)


# --- capacity ----------------------------------------------------------------------------------------------------


def capacity_data(results: dict[str, Any]) -> dict[str, Any] | None:
    """Recall of the lora reader per (rank, size) when the grid varies ``lora.r`` and a size; else None."""
    grid = results.get("config", {}).get("grid", {})
    points = results.get("points", [])
    size_key = next((k for k in SIZE_KEYS if k in grid), None)
    if size_key is None and points:
        size_key = next((k for k in SIZE_KEYS if all(k in p.get("overrides", {}) for p in points)), None)
    if size_key is None or not points or not all("lora.r" in p.get("overrides", {}) for p in points):
        return None
    curves: dict[int, list[tuple[float, float]]] = {}
    params: dict[int, int] = {}
    for p in points:
        agg = p.get("readers", {}).get("lora", {})
        value = agg.get("metrics", {}).get(_primary(p))
        if value is None:
            continue
        rank = int(p["overrides"]["lora.r"])
        curves.setdefault(rank, []).append((float(p["overrides"][size_key]), float(value)))
        if (p.get("write") or {}).get("trainable_params"):
            params[rank] = int(p["write"]["trainable_params"])
    if not curves:
        return None
    saturation = {}
    for rank, pts in curves.items():
        pts.sort()
        held = [size for size, recall in pts if recall >= SATURATION]
        saturation[rank] = max(held) if held else None
    return {"size_key": size_key, "curves": dict(sorted(curves.items())), "params": params, "saturation": saturation}


def capacity_from_calibration(data: dict[str, Any]) -> dict[str, Any] | None:
    """The same curves from a ``loramem calibrate`` output (recall = teacher-forced exact match, = greedy)."""
    points = data.get("points") or []
    if "threshold" not in data or not points or "r" not in points[0]:
        return None
    curves: dict[int, list[tuple[float, float]]] = {}
    params: dict[int, int] = {}
    for p in points:
        curves.setdefault(int(p["r"]), []).append((float(p["entries"]), float(p["recall"])))
        params[int(p["r"])] = int(p["trainable_params"])
    saturation = {}
    for rank, pts in curves.items():
        pts.sort()
        held = [size for size, recall in pts if recall >= data["threshold"]]
        saturation[rank] = max(held) if held else None
    return {"size_key": "entries", "curves": dict(sorted(curves.items())), "params": params,
            "saturation": saturation}


def _bounded(data: dict[str, Any]) -> dict[int, bool]:
    from loramem.capacity import CapacityModel

    return CapacityModel.load_dict(data).bounded()


def calibration_section(data: dict[str, Any], out: Path, prefix: str = "") -> list[str]:
    """Markdown for a ``loramem calibrate`` run: every point, the saturation table, the curves."""
    cap = capacity_from_calibration(data)
    assert cap is not None
    train = data.get("train") or {}
    lines = ["## capacity (loramem calibrate)", "",
             f"- base model: {data.get('base_model')}; command: `{data.get('command') or 'loramem calibrate'}`",
             f"- budget per point: at most {train.get('max_steps')} steps of {train.get('batch_tokens')} tokens, "
             f"stopping early at {train.get('target_recall')} recall; held = recall >= {data['threshold']}",
             f"- fit over ranks that held anything: {data.get('fit')}", "",
             _table(["rank", "entries", "knowledge tokens", "trainable params", "recall", "steps", "seconds"],
                    [[p["r"], p["entries"], p["knowledge_tokens"], p["trainable_params"], p["recall"], p["steps"],
                      p.get("seconds")] for p in sorted(data["points"], key=lambda p: (p["r"], p["entries"]))]), "",
             "### Saturation per rank", "", capacity_table(cap), "",
             "Ranks that held every size tried have only a lower bound (they may hold more): "
             + (", ".join(f"r{r}" for r, b in _bounded(data).items() if not b) or "none") + ".", "",
             f"![capacity]({plot_capacity(cap, out / f'{prefix}capacity.png').name})"]
    eff = plot_efficiency(cap, out / f"{prefix}efficiency.png")
    return [*lines, f"![efficiency]({eff.name})" if eff else "(no rank reached the saturation recall)", ""]


def capacity_table(cap: dict[str, Any]) -> str:
    rows = []
    for rank in cap["curves"]:
        sat, n = cap["saturation"][rank], cap["params"].get(rank)
        eff = sat / n * 1e6 if sat and n else None
        rows.append([f"r{rank}", n, _fmt(sat, 0) if sat else "none", eff])
    return _table(["rank", "trainable params", f"largest {cap['size_key']} with recall >= {SATURATION:.0%}",
                   "per million trainable params"], rows)


# --- plots -------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_capacity(cap: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for rank, pts in cap["curves"].items():
        ax.plot([s for s, _ in pts], [r for _, r in pts], marker="o", label=f"r{rank}")
    ax.axhline(SATURATION, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    sizes = sorted({s for pts in cap["curves"].values() for s, _ in pts})
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel(f"knowledge size ({cap['size_key']})")
    ax.set_ylabel("recall (lora reader)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(title="LoRA rank")
    ax.set_title("Recall against knowledge size, per rank")
    return _save(fig, plt, path)


def plot_efficiency(cap: dict[str, Any], path: Path) -> Path | None:
    """Largest size recalled >= 90% per million trainable parameters, one bar per rank (none for ranks that
    hold nothing)."""
    ranks = [r for r in cap["curves"] if cap["saturation"][r] and cap["params"].get(r)]
    if not ranks:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar([f"r{r}" for r in ranks], [cap["saturation"][r] / cap["params"][r] * 1e6 for r in ranks])
    ax.set_yscale("log")
    ax.set_xlabel("LoRA rank")
    ax.set_ylabel(f"saturation {cap['size_key']} per million trainable params")
    ax.set_title(f"Knowledge held (recall >= {SATURATION:.0%}) per trainable parameter")
    return _save(fig, plt, path)


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [0.0 if math.isnan(v) else v for v in values], width, label=name)
    if all(math.isnan(v) or v <= 1.0 for values in series.values() for v in values):
        ax.set_ylim(0.0, 1.05)  # metrics in [0, 1]: the same scale on every chart
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
    ax.legend(fontsize="small")


def plot_readers(results: dict[str, Any], path: Path) -> Path | None:
    """The primary metric per reader, bars grouped by point."""
    points = results.get("points", [])
    readers = _readers(results)
    if not points or not readers:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.25 * len(points) * len(readers)), 4))
    series = {r: [p.get("readers", {}).get(r, {}).get("metrics", {}).get(_primary(p), float("nan")) for p in points]
              for r in readers}
    _grouped_bars(ax, [p.get("label", str(p.get("index"))) for p in points], series)
    primaries = sorted({_primary(p) for p in points})
    ax.set_ylabel(" / ".join(primaries))
    ax.set_title(f"{results.get('name', '')}: {' / '.join(primaries)} per reader")
    return _save(fig, plt, path)


def plot_kinds(point: dict[str, Any], path: Path) -> Path | None:
    """The primary metric per question kind, one bar per reader (points with more than one kind)."""
    readers = {n: a for n, a in point.get("readers", {}).items() if "by_kind" in a}
    kinds = sorted({k for a in readers.values() for k in a["by_kind"]})
    if len(kinds) < 2:
        return None
    primary = _primary(point)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.3 * len(kinds) * len(readers)), 4))
    series = {n: [a["by_kind"].get(k, {}).get("metrics", {}).get(primary, float("nan")) for k in kinds]
              for n, a in readers.items()}
    _grouped_bars(ax, kinds, series)
    ax.set_ylabel(primary)
    ax.set_title(f"{point.get('label', '')}: {primary} per question kind")
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the report ---------------------------------------------------------------------------------------------------


def _header(results: dict[str, Any]) -> list[str]:
    git, machine, model = results.get("git") or {}, results.get("machine") or {}, results.get("model") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (results.get("versions") or {}).items() if v)
    commit = (git.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    judge = results.get("judge")
    lines = [
        f"- model: {model.get('name', results.get('config', {}).get('model', '?'))}"
        + (f" ({model['base_params'] / 1e6:.0f}M parameters)" if model.get("base_params") else ""),
        f"- status: {results.get('status', '?')}; started {results.get('started', '?')}, "
        f"{_fmt(results.get('seconds'), 1)} s in all; peak RSS {_fmt(results.get('ru_maxrss_mb'), 0)} MB",
        f"- commit: {commit}",
        f"- machine: {machine.get('cpu_count', '?')} CPUs, {machine.get('torch_threads', '?')} torch threads, "
        f"fp32 matmul {machine.get('matmul_gflops', '?')} GFLOP/s; {machine.get('platform', '')}",
        *_load_lines(results),
        f"- versions: {versions}",
        f"- judge: {judge['name'] + ' (judge_score, 0-10)' if judge else 'none'}",
    ]
    if results.get("config", {}).get("notes"):
        lines.append(f"- notes: {results['config']['notes']}")
    return lines


def _load_lines(results: dict[str, Any]) -> list[str]:
    """The start and end readings and the contention verdict (runs before these readings: say so)."""
    load = results.get("load")
    if not load:
        return ["- load: not recorded (a run from before the load-average and end matmul-rate readings)"]
    start, end = load.get("start") or {}, load.get("end") or {}
    lines = [f"- load average (1 min) at start {_fmt(start.get('load_1m'), 2)}, end {_fmt(end.get('load_1m'), 2)}; "
             f"fp32 matmul at start {_fmt(start.get('matmul_gflops'), 1)}, end {_fmt(end.get('matmul_gflops'), 1)} "
             f"GFLOP/s"]
    if results.get("contended"):
        lines.append("- **contended** (latency and write-time figures confounded; accuracy figures stand): "
                     + "; ".join(results.get("contention", [])))
    return lines


# Experiment kinds whose report is their own section (``report_kinds.kind_section``), not the readers' tables.
KIND_SECTIONS = ("modules", "write_throughput", "write_recipes", "incremental", "natural_questions", "short_term")


def report_section(results: dict[str, Any], out: Path, prefix: str = "") -> list[str]:
    """Markdown lines for one run; its plots are written into ``out`` (file names start with ``prefix``)."""
    if capacity_from_calibration(results) is not None:
        return calibration_section(results, out, prefix)
    if results.get("kind") in KIND_SECTIONS or "benchmark" in results:
        from .report_kinds import kind_section

        return [f"## {results.get('name', results.get('benchmark', 'run'))}", "", *_header(results), "",
                *kind_section(results)]
    lines = [f"## {results.get('name', 'run')}", "", *_header(results), ""]
    if results.get("errors"):
        lines += ["**Errors:**", "", *[f"- {e}" for e in results["errors"]], ""]
    lines += ["### Results per point and reader", "", point_table(results), ""]
    lines += ["### Every metric (means)", "", metrics_table(results), ""]
    cap = capacity_data(results)
    if cap is not None:
        lines += ["### Capacity", "", capacity_table(cap), ""]
        lines.append(f"![capacity]({plot_capacity(cap, out / f'{prefix}capacity.png').name})")
        eff = plot_efficiency(cap, out / f"{prefix}efficiency.png")
        lines += [f"![efficiency]({eff.name})" if eff else "(no rank reached the saturation recall)", ""]
    readers_png = plot_readers(results, out / f"{prefix}readers.png")
    if readers_png is not None:
        lines += ["### Primary metric per reader", "", f"![readers]({readers_png.name})", ""]
    for p in results.get("points", []):
        kinds_png = plot_kinds(p, out / f"{prefix}kinds-p{p.get('index', 0):03d}.png")
        if kinds_png is not None:
            lines += [f"### By question kind: {p.get('label', '')}", "", f"![kinds]({kinds_png.name})", ""]
    return lines


def write_report(runs: Sequence[tuple[Path, dict[str, Any]]], out: str | os.PathLike[str]) -> Path:
    """Write ``REPORT.md`` (and its PNGs) into ``out`` covering every run given; returns the report's path."""
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmark report", ""]
    if len(runs) > 1:
        lines += ["Runs: " + ", ".join(str(path) for path, _ in runs), ""]
    for i, (_, results) in enumerate(runs):
        prefix = f"{results.get('name', 'run')}-" if len(runs) > 1 else ""
        if len(runs) > 1 and any(r.get("name") == results.get("name") for _, r in runs[:i]):
            prefix = f"{results.get('name', 'run')}-{i}-"
        lines += report_section(results, target, prefix)
    path = target / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
