"""Writes fanned out over worker processes (and Ray): the same weights as the sequential path, committed here."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from conftest import FAST_LORA, FAST_SYNTH, FAST_TRAIN

from loramem import Fact, KnowledgeMemory, PlanConfig
from loramem.capacity import CapacityModel
from loramem.fanout import LocalExecutor, RayExecutor

PEOPLE = ["Alma", "Bram", "Cora", "Dorin", "Elsa", "Fenn", "Gita", "Hugo"]
COLOURS = ["blue", "red", "green", "yellow", "purple", "orange", "black", "white"]
TRAIN = dataclasses.replace(FAST_TRAIN, kl_weight=0.0)


def _capacity() -> CapacityModel:
    """r8 holds about two of these facts: eight facts make a plan of four modules."""
    points = [{"r": 8, "entries": 2, "knowledge_tokens": 4, "trainable_params": 4000, "recall": 1.0},
              {"r": 8, "entries": 8, "knowledge_tokens": 16, "trainable_params": 4000, "recall": 0.2}]
    return CapacityModel(base_model="tiny", base_fingerprint=None, threshold=0.9, points=points)


def _write(root, model_dir, executor=None):
    facts = [Fact(p, "favourite colour", c) for p, c in zip(PEOPLE, COLOURS)]
    with KnowledgeMemory.open(root, model=str(model_dir), train=TRAIN, lora=FAST_LORA, synth=FAST_SYNTH) as mem:
        mem.capacity = _capacity()
        mem.plan_config = PlanConfig(fill=1.0, auto_rank=False, group_by="arrival")
        t0 = time.perf_counter()
        report = mem.write(facts, namespace="ns", executor=executor)
        seconds = time.perf_counter() - t0
        states = [mem.store.load_adapter(mem.store.module(p.module_id))[1] for p in report.parts]
        answers = [a.text for a in mem.ask([f.canonical_question for f in facts], namespace="ns")]
    return report, states, answers, seconds


def _same_weights(a, b) -> None:
    assert len(a) == len(b) >= 2
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)


def test_a_plan_of_four_modules_trains_in_worker_processes_with_the_sequential_weights(tmp_path, tiny_model_dir):
    seq, seq_states, seq_answers, seq_s = _write(tmp_path / "seq", tiny_model_dir)
    with LocalExecutor(workers=2, threads=1) as ex:
        fan, fan_states, fan_answers, fan_s = _write(tmp_path / "fan", tiny_model_dir, ex)
    print(f"\n{len(fan.parts)} modules: sequential {seq_s:.1f}s, 2 worker processes {fan_s:.1f}s "
          f"(ratio {fan_s / seq_s:.2f}; includes spawning the workers and loading the model in each)")
    assert len(seq.parts) == len(fan.parts) >= 4
    assert [p.steps for p in fan.parts] == [p.steps for p in seq.parts]
    _same_weights(seq_states, fan_states)
    assert fan_answers == seq_answers
    assert all(p.version == 1 for p in fan.parts)  # committed here, one version each


def test_one_module_plan_does_not_fan_out(mem, facts):
    class Refuses:
        def train(self, jobs):  # pragma: no cover - must not be called
            raise AssertionError("a one-module plan trained through the executor")

    report = mem.write(facts[:2], namespace="one", executor=Refuses())
    assert report.version == 1 and not report.parts


def test_fan_out_needs_a_model_workers_can_load(tmp_path, tiny_model_dir):
    from loramem import models

    given = models.load(__import__("loramem").ModelConfig(name=str(tiny_model_dir), device="cpu"))
    with KnowledgeMemory.open(tmp_path / "s", model=given, train=TRAIN, lora=FAST_LORA, synth=FAST_SYNTH) as mem:
        mem.capacity = _capacity()
        mem.plan_config = PlanConfig(fill=1.0, auto_rank=False, group_by="arrival")
        with pytest.raises(ValueError, match="load by name"):
            mem.write([Fact(p, "favourite colour", c) for p, c in zip(PEOPLE, COLOURS)], namespace="ns",
                      executor=LocalExecutor(workers=1))


def test_ray_missing_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a))
    with pytest.raises(ImportError, match=r"loramem\[ray\]"):
        RayExecutor().train([])


def test_ray_is_never_initialised_implicitly():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray runtime is already up in this process")
    with pytest.raises(RuntimeError, match="ray.init"):
        RayExecutor().train([])
    assert not ray.is_initialized()


@pytest.mark.slow
def test_ray_tasks_write_four_modules_with_the_sequential_weights(tmp_path, tiny_model_dir):
    ray = pytest.importorskip("ray")
    seq, seq_states, seq_answers, seq_s = _write(tmp_path / "seq", tiny_model_dir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        fan, fan_states, fan_answers, fan_s = _write(tmp_path / "ray", tiny_model_dir, RayExecutor(num_cpus=1))
    finally:
        ray.shutdown()
    print(f"\n{len(fan.parts)} modules: sequential {seq_s:.1f}s, Ray tasks on 2 CPUs {fan_s:.1f}s "
          f"(ratio {fan_s / seq_s:.2f}; includes each task loading the model)")
    _same_weights(seq_states, fan_states)
    assert fan_answers == seq_answers
