"""Devices and dtypes: clear errors, a fingerprint that ignores the dtype, writes and reads in bf16 on a CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST_LORA, FAST_SYNTH, FAST_TRAIN

from loramem import Fact, KnowledgeMemory, ModelConfig
from loramem import models as models_mod
from loramem.devices import DeviceError, autocast, model_device, resolve_device, resolve_dtype


def test_auto_on_a_cpu_machine_is_cpu_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device = resolve_device("auto")
    assert device.type in ("cpu", "mps")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # slow on a CPU, but it runs


@pytest.mark.parametrize(("spec", "words"), [
    ("cuda", "no CUDA device"), ("cuda:3", "no CUDA device"), ("cuda:x", "device index"), ("tpu", "unknown device"),
])
def test_a_device_that_does_not_exist_is_a_clear_error(monkeypatch, spec, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=words):
        resolve_device(spec)


def test_a_cuda_index_past_the_last_device_names_the_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"2 CUDA device\(s\), cuda:0..cuda:1"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_bf16_on_a_gpu_without_it_is_refused_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    with pytest.raises(DeviceError, match="Tesla T4.*does not support it"):
        resolve_dtype("bfloat16", torch.device("cuda", 0))
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16


def test_model_config_validates_device_and_quantize():
    with pytest.raises(ValueError, match="device"):
        ModelConfig(device="gpu")
    with pytest.raises(ValueError, match="quantize"):
        ModelConfig(quantize="2bit")
    assert ModelConfig().dtype == "auto" and ModelConfig().device == "auto"


def test_quantize_on_a_cpu_says_what_it_needs(tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(ImportError, match=r"loramem\[quantized\]"):
        models_mod.load(ModelConfig(name=str(tiny_model_dir), device="cpu", quantize="4bit"))


def test_fingerprint_is_the_same_in_fp32_and_bf16_and_differs_from_another_base(tiny_model_dir, other_model_dir):
    fp32, _ = models_mod.load(ModelConfig(name=str(tiny_model_dir), device="cpu", dtype="float32"))
    bf16, _ = models_mod.load(ModelConfig(name=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
    other, _ = models_mod.load(ModelConfig(name=str(other_model_dir), device="cpu", dtype="bfloat16"))
    assert bf16.get_input_embeddings().weight.dtype == torch.bfloat16
    assert models_mod.fingerprint(fp32) == models_mod.fingerprint(bf16)
    assert models_mod.fingerprint(other) != models_mod.fingerprint(bf16)
    # The old rule told fp32 and bf16 apart: that is what kept modules from moving across dtypes.
    assert models_mod.legacy_fingerprint(fp32) != models_mod.legacy_fingerprint(bf16)
    assert model_device(bf16) == torch.device("cpu")


def test_autocast_is_a_no_op_on_a_cpu(tiny_model_dir):
    bf16, _ = models_mod.load(ModelConfig(name=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
    with autocast(bf16):
        assert not torch.is_autocast_enabled("cuda")


def _facts() -> list[Fact]:
    return [Fact(n, "favourite colour", c) for n, c in
            zip(["Alma", "Bram", "Cora", "Dorin"], ["blue", "red", "green", "yellow"])]


def test_a_module_written_in_fp32_reads_in_bf16_and_back(tmp_path, tiny_model_dir):
    store = tmp_path / "store"
    kw = {"train": FAST_TRAIN, "lora": FAST_LORA, "synth": FAST_SYNTH}
    with KnowledgeMemory.open(store, model=ModelConfig(name=str(tiny_model_dir), dtype="float32"), **kw) as m32:
        report = m32.write(_facts(), namespace="c")
        assert report.recall >= 0.99
        base = m32.store.module(report.module_id).report["base"]
        assert base["dtype"] == "float32" and base["device"] == "cpu"
        fp32_answers = [a.text for a in m32.ask([f.canonical_question for f in _facts()], namespace="c")]
    with KnowledgeMemory.open(store, model=ModelConfig(name=str(tiny_model_dir), dtype="bfloat16"), **kw) as m16:
        answers = [a.text for a in m16.ask([f.canonical_question for f in _facts()], namespace="c")]
    # bf16 rounds every activation: the tiny random model's answers may drift, but most stay.
    same = sum(a == b for a, b in zip(answers, fp32_answers))
    assert same >= 3, (answers, fp32_answers)


def test_a_bf16_write_on_a_cpu_trains_close_to_fp32(tmp_path, tiny_model_dir):
    kw = {"train": FAST_TRAIN, "lora": FAST_LORA, "synth": FAST_SYNTH}
    reports = {}
    for dtype in ("float32", "bfloat16"):
        with KnowledgeMemory.open(tmp_path / dtype, model=ModelConfig(name=str(tiny_model_dir), dtype=dtype),
                                  **kw) as m:
            reports[dtype] = m.write(_facts(), namespace="c")
    # Tolerance: bf16 has 8 bits of mantissa, so the run may take more steps, but it must reach the target
    # and within 2x the fp32 step count.
    assert reports["bfloat16"].reached_target, reports["bfloat16"].summary()
    assert reports["bfloat16"].steps <= 2 * reports["float32"].steps + 5, (
        reports["bfloat16"].steps, reports["float32"].steps)


def test_modules_recorded_with_the_old_fingerprint_still_load(tmp_path, tiny_model_dir, other_model_dir):
    """Stores written by loramem 0.1 carry its fp32-rounded fingerprint: they open, another base does not."""
    store = tmp_path / "store"
    kw = {"train": FAST_TRAIN, "lora": FAST_LORA, "synth": FAST_SYNTH}
    with KnowledgeMemory.open(store, model=str(tiny_model_dir), **kw) as m:
        report = m.write(_facts()[:2], namespace="c")
        legacy = models_mod.legacy_fingerprint(m.model)
        assert legacy != m.fingerprint
        with m.store.transaction() as db:
            db.execute("UPDATE modules SET base_fingerprint=? WHERE module_id=?", (legacy, report.module_id))
    with KnowledgeMemory.open(store, model=str(tiny_model_dir), **kw) as m:
        assert m.ask([_facts()[0].canonical_question], namespace="c")[0].modules == [report.module_id]
    from loramem.store import BaseModelMismatchError

    with KnowledgeMemory.open(store, model=str(other_model_dir), **kw) as m, pytest.raises(BaseModelMismatchError):
        m.ask([_facts()[0].canonical_question], namespace="c")


def test_the_cli_reports_a_missing_device_in_one_line(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from loramem.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["ask", "--store", str(tmp_path / "s"), "--model", str(tiny_model_dir), "--device", "cuda:1",
                 "-n", "x", "What is the favourite colour of Alma?"])
    assert code == 2
    assert "device 'cuda:1' requested, but torch sees no CUDA device" in capsys.readouterr().err
