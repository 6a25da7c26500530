"""Writes fanned out: the modules of one write plan trained as parallel jobs, committed by the caller.

    mem.write(items, "contacts", executor=LocalExecutor(workers=2))      # processes on this machine
    ray.init(address="auto")                                             # the caller's cluster, never ours
    mem.write(items, "contacts", executor=RayExecutor(num_gpus=1))       # one Ray task per module

Each job (``writing.WriteJob``) opens the store read-only and the base model by name in its worker, trains
one module version from the store as it was before the write (``writing.train_module``) and sends back the
trained version (``writing.Trained``: the state dict, the report); the writing process commits each version in
plan order, one transaction each, under its writer lock, exactly as a sequential write does. A worker keeps its
model loaded between jobs. Training is seeded, so a job gives the weights the sequential path gives (up to the
float reduction order of the worker's thread count). The store folder must be reachable from every worker
(a shared filesystem on a cluster). Layer 4.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

from .writing import Trained, WriteJob, train_module

_WORKER: dict[tuple[str, str], Any] = {}  # (store, model config) -> Runtime, per worker process


def run_job(job: WriteJob) -> Trained:
    """Train one module of a write plan in this process (a worker): the function every executor runs."""
    from .route import Routers
    from .runtime import Runtime
    from .store import ModuleStore

    key = (job.store, job.model.to_json())
    rt = _WORKER.get(key)
    if rt is None:
        store = ModuleStore(job.store)
        settings = dataclasses.replace(job.settings)
        rt = Runtime.load(store, job.model, None, settings, Routers(store, lambda: settings.read), lambda: None)
        _WORKER[key] = rt
    for f in dataclasses.fields(job.settings):  # the caller's settings of this write (the closures read these)
        setattr(rt.settings, f.name, getattr(job.settings, f.name))
    return train_module(rt, job.namespace, job.assignment, job.new_examples, job.train, job.synth,
                        preserve=job.preserve, synth_seconds=job.synth_seconds)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class LocalExecutor:
    """Jobs in a pool of ``workers`` spawned processes on this machine, ``threads`` torch threads each.

    The default gives each worker an equal share of this machine's cores. The pool starts on the first write
    that fans out and lives until ``close()`` (or the ``with`` block ends), so workers keep their model loaded.
    """

    def __init__(self, workers: int = 2, threads: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, got {workers}")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self._pool: Any = None

    def train(self, jobs: Sequence[WriteJob]) -> list[Trained]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            # spawn, not fork: torch and the caller's threads (a consolidator, a server) do not survive a fork.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(self.threads,))
        return list(self._pool.map(run_job, jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayExecutor:
    """One Ray task per job, with the resources the caller gives (``num_cpus``, ``num_gpus`` per task).

    loramem never calls ``ray.init``: start Ray (or connect to a cluster, ``ray.init(address="auto")``) first.
    ``ray`` is the optional extra ``loramem[ray]``; it is imported only when a write fans out.
    """

    def __init__(self, num_cpus: float = 1, num_gpus: float = 0, **options: Any) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.options = options  # more ray.remote options: memory, resources, runtime_env, ...

    def train(self, jobs: Sequence[WriteJob]) -> list[Trained]:
        ray = require_ray()
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialised: call ray.init() (or ray.init(address='auto') to join a "
                               "cluster) before writing with RayExecutor; loramem never starts Ray itself")
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, **self.options)(run_job)
        return list(ray.get([task.remote(job) for job in jobs]))


def require_ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        raise ImportError("RayExecutor needs Ray: pip install 'loramem[ray]'")
    import ray

    return ray
