"""The benchmark runner: an experiment config (data) in, one ``results.json`` and one ``samples.jsonl`` out.

``Runner(experiment, out).run()`` does what every experiment shares and hands the measuring to the
experiment's kind (``benchmarks.experiments``: ``readers``, ``modules``, ``write_throughput``,
``natural_questions``):

1. a ``Reading`` of the machine before any work of its own (1-min load average, a short fp32 matmul rate;
   ``benchmarks.provenance``), with the package versions, the git commit and whether the tree was dirty;
2. one ``KnowledgeMemory`` on ``<out>/store`` with the experiment's model, loaded once (and the judge's);
3. the experiment itself, which appends to ``samples.jsonl`` and saves ``results.json`` as it goes;
4. a second ``Reading`` at the end and the contention verdict (``contended``, ``contention``), warned on stderr;
5. the scratch store removed (unless ``keep_store``).

``results.json`` is rewritten after every step, so an interrupted run keeps what it measured;
``benchmarks.validate.validate_run`` checks a finished one.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Experiment
from .output import RESULTS, RunOutput
from .provenance import (
    LOAD_PER_CPU,
    MATMUL_SECONDS,
    RATE_KEPT,
    contention,
    git_state,
    machine_info,
    maxrss_mb,
    now,
    package_versions,
    take_reading,
)

if TYPE_CHECKING:
    from loramem import KnowledgeMemory


def _tqdm_write(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)


class Runner:
    """Runs one experiment on one loaded model. ``Runner(exp, out).run()`` -> the results dict.

    ``matmul_seconds``: how long each of the two matmul-rate measurements takes (tests shorten it).
    """

    def __init__(self, experiment: Experiment, out: str | os.PathLike[str], *, keep_store: bool = False,
                 say: Callable[[str], Any] | None = None, matmul_seconds: float = MATMUL_SECONDS) -> None:
        self.experiment = experiment
        self.output = RunOutput(Path(out))
        self.keep_store = keep_store
        self.say = say or _tqdm_write
        self.matmul_seconds = matmul_seconds
        self.mem: KnowledgeMemory | None = None
        self.judge: Any = None
        self._judge_mem: KnowledgeMemory | None = None
        self.errors: list[str] = []
        self._results: dict[str, Any] = {}
        self._t_start = 0.0

    def _open(self) -> KnowledgeMemory:
        from loramem import KnowledgeMemory, ModelConfig

        exp = self.experiment
        if self.output.store.exists():
            shutil.rmtree(self.output.store)  # a fresh store: points must not find items of an earlier run
        return KnowledgeMemory.open(self.output.store, model=ModelConfig(name=exp.model), lora=exp.lora,
                                    train=exp.train, synth=exp.synth, read=exp.read)

    def _open_judge(self, mem: KnowledgeMemory) -> dict[str, Any] | None:
        cfg = self.experiment.judge
        if cfg is None:
            return None
        from loramem import KnowledgeMemory, ModelConfig

        from .metrics import LLMJudge

        jmem = mem
        if cfg.model not in ("same", self.experiment.model):
            jmem = self._judge_mem = KnowledgeMemory.open(self.output.judge_store, model=ModelConfig(name=cfg.model))

        def llm(prompt: str) -> str:
            # The bare model judges (namespace=None: every module off), whatever the reader under test used.
            return jmem.chat([[{"role": "user", "content": prompt}]], namespace=None,
                             max_new_tokens=cfg.max_new_tokens)[0].text

        self.judge = LLMJudge(llm, name=jmem.model_config.name)
        return {"class": type(self.judge).__name__, "name": self.judge.name, "model": jmem.model_config.name,
                "max_new_tokens": cfg.max_new_tokens, "metric": "judge_score (0-10)"}

    def run(self) -> dict[str, Any]:
        from .experiments import get_experiment

        exp = self.experiment
        measure = get_experiment(exp.kind)
        exp.points()  # a config with a bad grid point fails here, before anything is measured
        self.output.start()
        self._t_start = time.perf_counter()
        start = take_reading(self.matmul_seconds)  # before the model loads: the machine as others left it
        results = self._results = {
            "name": exp.name,
            "kind": exp.kind,
            "config": exp.to_dict(),
            "status": "running",
            "command": sys.argv,
            "started": now(),
            "finished": None,
            "seconds": None,
            "git": git_state(),
            "versions": package_versions(),
            "machine": machine_info(start.matmul_gflops),
            "load": {"start": start.to_dict(), "end": None,
                     "rule": {"load_per_cpu": LOAD_PER_CPU, "rate_kept": RATE_KEPT}},
            "contended": None,
            "contention": [],
            "model": None,
            "judge": None,
            "points": [],
            "errors": self.errors,
            "samples": self.output.samples.name,
        }
        self._warn(contention(start, None, os.cpu_count()))  # say it now, not hours later
        self.save(results)
        mem = self.mem = self._open()
        try:
            t0 = time.perf_counter()
            mem.tokenizer  # noqa: B018  (loads the model now, so its load time is not charged to a measurement)
            results["model"] = {"name": exp.model, "base_params": getattr(mem, "base_params", None),
                                "fingerprint": mem.fingerprint, "load_seconds": round(time.perf_counter() - t0, 3)}
            results["judge"] = self._open_judge(mem)
            measure(self, results)
            results["status"] = "finished" if not self.errors else "finished with errors"
        except BaseException as exc:
            results["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r:.300}"
            raise
        finally:
            for m in {id(mem): mem, id(self._judge_mem): self._judge_mem}.values():
                if m is not None:
                    m.close()
            end = take_reading(self.matmul_seconds)
            reasons = contention(start, end, os.cpu_count())
            results["load"]["end"] = end.to_dict()
            results["contended"], results["contention"] = bool(reasons), reasons
            self._warn([r for r in reasons if not r.startswith("load average")])  # the start was said already
            results["finished"] = now()
            self.save(results)
            if not self.keep_store:
                shutil.rmtree(self.output.store, ignore_errors=True)
                shutil.rmtree(self.output.judge_store, ignore_errors=True)
        return results

    def save(self, results: dict[str, Any]) -> None:
        """Save ``results.json`` with the seconds and peak memory so far (experiments call it after each step)."""
        results["seconds"] = round(time.perf_counter() - self._t_start, 3)
        results["ru_maxrss_mb"] = round(maxrss_mb(), 1)
        self.output.save(results)

    def error(self, where: str, exc: BaseException) -> str:
        """Record a failure (``errors`` in results.json) and say it; returns the message."""
        msg = f"{where}: {type(exc).__name__}: {exc}"
        self.errors.append(msg)
        self.say(f"  FAILED {msg}")
        return msg

    def _warn(self, reasons: list[str]) -> None:
        for reason in reasons:
            print(f"WARNING {self.experiment.name}: likely contended: {reason}. Latency and write-time figures of "
                  f"this run are confounded (accuracy figures stand); rerun it on an idle machine.", file=sys.stderr)


def run_experiment(experiment: Experiment, out: str | os.PathLike[str] | None = None, *,
                   keep_store: bool = False, matmul_seconds: float = MATMUL_SECONDS) -> dict[str, Any]:
    """Run an experiment; write ``results.json`` and ``samples.jsonl`` into ``out`` (default ``results/<name>``)."""
    return Runner(experiment, out or RESULTS / experiment.name, keep_store=keep_store,
                  matmul_seconds=matmul_seconds).run()
