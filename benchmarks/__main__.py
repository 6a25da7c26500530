"""``python -m benchmarks``: run an experiment config, render a report, list what there is to run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

EPILOG = """quick start:
  python -m benchmarks list                                   # tasks, readers and configs
  python -m benchmarks run --smoke                            # every task x reader, tiny sizes, validated
  python -m benchmarks run axes-phonebook                     # a config by name (benchmarks/configs/*.json)
  python -m benchmarks run modules-phonebook                  # many modules: budget, routing, merging, throughput
  python -m benchmarks run write-throughput                   # loramem's write loop vs Trainer + peft
  python -m benchmarks run my.json --out /tmp/run --limit 20  # any config file; 20 questions per point
  python -m benchmarks report benchmarks/results/axes-phonebook

A run writes results.json (config, versions, commit, machine, load average and matmul rate at start and end,
a `contended` verdict, timings, peak memory, the measurements) and samples.jsonl (one row per answer or step)
into --out (default benchmarks/results/<name>/), then validates them."""


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_experiment, smoke_experiment
    from .output import RESULTS
    from .report import write_report
    from .runner import Runner
    from .validate import validate_run

    if args.smoke == bool(args.config):
        print("run: give a CONFIG or --smoke (one of them)", file=sys.stderr)
        return 2
    try:
        exp = smoke_experiment(args.model) if args.smoke else load_experiment(args.config)
        if args.model is not None or args.limit is not None:
            data = exp.to_dict()
            data["model"] = args.model or data["model"]
            data["limit"] = data["limit"] if args.limit is None else args.limit
            exp = type(exp).from_dict(data)
    except ValueError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else RESULTS / exp.name
    t0 = time.perf_counter()
    runner = Runner(exp, out, keep_store=args.keep_store)
    try:
        runner.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was measured is in {out / 'results.json'}", file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    report = write_report([(out, json.loads((out / "results.json").read_text()))], out)
    print(f"{exp.name}: done in {wall:.1f}s wall -> {out / 'results.json'}, {report}")
    problems = validate_run(out)
    if problems:
        print(f"{'smoke' if args.smoke else exp.name} FAILED validation ({len(problems)} problem(s)):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    if args.smoke:
        print(f"smoke OK: every task x reader produced valid, scored results ({wall:.1f}s wall)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .output import iter_results
    from .report import write_report

    try:
        runs = list(iter_results(args.runs))
    except ValueError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    if args.out:
        print(write_report(runs, args.out))
    else:
        for path, results in runs:  # each run's report beside its results
            print(write_report([(path, results)], path))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from loramem.readers import READERS

    from .config import CONFIGS, Experiment
    from .tasks import available_tasks, get_task

    print("tasks:")
    for name in available_tasks():
        task = get_task(name)
        print(f"  {name:<12} primary metric: {task.primary}")
    print(f"readers: {', '.join(READERS)}")
    print(f"configs ({CONFIGS}):")
    for path in sorted(CONFIGS.glob("*.json")):
        try:
            exp = Experiment.from_file(path)
            notes = exp.notes.split(": ")[0].split(". ")[0]
            size = (f"{len(exp.points())} point(s) x {len(exp.readers)} reader(s)" if exp.kind == "readers"
                    else f"kind {exp.kind}")
            about = f"{size}: {notes[:70]}"
        except ValueError as exc:
            about = f"INVALID: {exc}"
        print(f"  {path.stem:<18} {about}")
    print("  smoke              built in: every task x every reader at tiny sizes (run --smoke)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description="Run benchmark experiments, render reports, list what there is to run.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment config (or the built-in --smoke profile)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", nargs="?", help="a config file, or a config name from benchmarks/configs")
    run.add_argument("--out", help="output folder (default benchmarks/results/<name>/)")
    run.add_argument("--model", help="override the config's model (an alias, a local HF folder, a hub id)")
    run.add_argument("--limit", type=int, help="at most N questions per point (taken round-robin over kinds)")
    run.add_argument("--smoke", action="store_true",
                     help="the built-in smoke profile: every task x reader at tiny sizes, then validate the results")
    run.add_argument("--keep-store", action="store_true",
                     help="keep the module store (<out>/store) after the run; by default it is deleted")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="render REPORT.md and PNG plots from run folders")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders holding results.json")
    rep.add_argument("--out", help="write one combined report here (default: each run's own folder)")
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="list tasks, readers and configs")
    ls.set_defaults(func=cmd_list)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
