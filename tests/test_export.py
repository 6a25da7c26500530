"""Serving elsewhere: the engine rules of ``validate_for``, the PEFT and GGUF exports, and their CLI commands."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import FAST_SYNTH

from loramem import KnowledgeMemory, LoraSpec, TrainConfig
from loramem.cli import main
from loramem.export import check_for, export_gguf, export_peft, read_gguf_lora, validate_for

LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
CLEAN = {"peft_type": "LORA", "r": 8, "lora_alpha": 8, "use_dora": False, "use_rslora": False,
         "init_lora_weights": True, "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
         "target_modules": list(LEAVES)}


def _state(r: int = 4) -> dict[str, torch.Tensor]:
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    return {f"{key}.lora_A.weight": torch.zeros(r, 8), f"{key}.lora_B.weight": torch.zeros(16, r)}


@pytest.mark.parametrize(
    "engine, change, state, match",
    [
        ("vllm", {"use_dora": True}, None, r"DoRA"),
        ("llamacpp", {"use_dora": True}, None, r"DoRA"),
        ("vllm", {}, {**_state(), "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": torch.ones(16)}, r"DoRA"),
        ("vllm", {"init_lora_weights": "pissa"}, None, r"init_lora_weights is 'pissa'.*true or false"),
        ("vllm", {"init_lora_weights": "gaussian"}, None, r"init_lora_weights is 'gaussian'"),
        ("llamacpp", {"init_lora_weights": "pissa_niter_4"}, None, r"residual base"),
        ("vllm", {"r": 128}, None, r"above vLLM's --max-lora-rank 64: start vLLM with --max-lora-rank 128"),
        ("vllm", {"r": 100}, None, r"--max-lora-rank 128"),
        ("vllm", {"r": 1024}, None, r"above 512"),
        ("vllm", {}, _state(r=96), r"rank 96 .*--max-lora-rank 128"),
        ("vllm", {"modules_to_save": ["lm_head"]}, None, r"modules_to_save \['lm_head'\]"),
        ("llamacpp", {"modules_to_save": ["lm_head"]}, None, r"modules_to_save"),
        ("vllm", {}, {**_state(), "base_model.model.lm_head.weight": torch.zeros(4, 4)}, r"not LoRA factors"),
        ("llamacpp", {"use_rslora": True}, None, r"rsLoRA.*--to gguf"),
        ("vllm", {"rank_pattern": {"q_proj": 4}}, None, r"rank_pattern"),
        ("vllm", {"alpha_pattern": {"q_proj": 4}}, None, r"alpha_pattern"),
        ("llamacpp", {"alpha_pattern": {"q_proj": 4}}, None, r"alpha_pattern"),
    ],
)
def test_validate_for_flags_each_rule(engine, change, state, match):
    problems = validate_for(engine, {**CLEAN, **change}, state)
    assert len(problems) == 1, problems
    assert re.search(match, problems[0]), problems[0]
    with pytest.raises(ValueError, match=match):
        check_for(engine, {**CLEAN, **change}, state)


@pytest.mark.parametrize(
    "engine, change",
    [
        ("vllm", {}),
        ("llamacpp", {}),
        ("vllm", {"use_rslora": True}),  # vLLM honours rsLoRA's alpha/sqrt(r)
        ("vllm", {"r": 64}),
        ("vllm", {"init_lora_weights": False}),
        ("llamacpp", {"r": 1024, "rank_pattern": {"q_proj": 4}}),  # llama.cpp scales each tensor by alpha/its rank
    ],
)
def test_clean_configs_pass(engine, change):
    assert validate_for(engine, {**CLEAN, **change}, _state()) == []
    check_for(engine, {**CLEAN, **change})


def test_check_for_names_every_problem_and_bad_arguments():
    with pytest.raises(ValueError, match=r"DoRA.*modules_to_save.*init_lora_weights"):
        check_for("vllm", {**CLEAN, "use_dora": True, "modules_to_save": ["lm_head"], "init_lora_weights": "olora"})
    with pytest.raises(ValueError, match=r"expected one of llamacpp, vllm, got 'sglang'"):
        validate_for("sglang", CLEAN)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_lora_rank: expected one of vLLM's values"):
        validate_for("vllm", CLEAN, max_lora_rank=48)
    assert validate_for("vllm", {**CLEAN, "r": 32}, max_lora_rank=16)  # the allowed values, not only 64


def _adapted(model_dir, tmp_path, *, r=4, alpha=8.0, use_rslora=True):  # type: ignore[no-untyped-def]
    """The tiny model with a random (non-zero) LoRA on every linear, and its saved adapter_config + state."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(LEAVES),
                                           use_rslora=use_rslora, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)  # B starts at zero: give the adapter an effect to preserve
    peft.eval()
    peft.save_pretrained(tmp_path / "orig")
    cfg = json.loads((tmp_path / "orig" / "adapter_config.json").read_text())
    return peft, cfg, load_file(str(tmp_path / "orig" / "adapter_model.safetensors"))


def _ids(model) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))


def _base(model_dir):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def test_export_peft_folds_rslora_and_loads_with_the_same_logits(tmp_path, tiny_model_dir):
    from peft import PeftModel

    peft, cfg, state = _adapted(tiny_model_dir, tmp_path, r=4, alpha=8.0)
    ids = _ids(peft)
    with torch.no_grad():
        want = peft(input_ids=ids).logits
        with peft.disable_adapter():
            bare = peft(input_ids=ids).logits
    assert (want - bare).abs().max() > 1e-3  # the adapter does something
    out = export_peft(cfg, state, tmp_path / "out")
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["lora_alpha"] == 16 and saved["use_rslora"] is False  # 8*sqrt(4): 16/4 == 8/sqrt(4)
    assert saved["init_lora_weights"] is True and saved["modules_to_save"] is None
    assert validate_for("llamacpp", cfg) and validate_for("llamacpp", saved) == []
    loaded = PeftModel.from_pretrained(_base(tiny_model_dir), str(out)).eval()
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exists"):
        export_peft(cfg, state, out)
    assert export_peft(cfg, state, out, overwrite=True) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig", "out"]  # no temporary folder left behind


def test_export_gguf_round_trip_and_logits(tmp_path, tiny_model_dir):
    gguf = pytest.importorskip("gguf")
    peft, cfg, state = _adapted(tiny_model_dir, tmp_path, r=4, alpha=8.0)
    c = peft.config
    path = export_gguf(cfg, state, tmp_path / "a.gguf", arch="llama", n_head=c.num_attention_heads,
                       n_kv_head=c.num_key_value_heads)
    reader = gguf.GGUFReader(str(path))
    meta = {k: reader.get_field(k).contents() for k in ("general.architecture", "general.type", "adapter.type",
                                                       "adapter.lora.alpha")}
    assert meta["general.architecture"] == "llama" and meta["general.type"] == "adapter"
    assert meta["adapter.type"] == "lora" and meta["adapter.lora.alpha"] == pytest.approx(16.0)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * len(LINEARS) * c.num_hidden_layers
    head_dim = c.hidden_size // c.num_attention_heads
    # ggml dims (reversed numpy shapes): lora_a ne = [in, r], lora_b ne = [r, out], as llama.cpp checks them
    assert [int(x) for x in tensors["blk.0.attn_q.weight.lora_a"].shape] == [c.hidden_size, 4]
    assert [int(x) for x in tensors["blk.0.attn_q.weight.lora_b"].shape] == [4, c.num_attention_heads * head_dim]
    assert [int(x) for x in tensors["blk.1.attn_k.weight.lora_b"].shape] == [4, c.num_key_value_heads * head_dim]
    assert [int(x) for x in tensors["blk.1.ffn_down.weight.lora_a"].shape] == [c.intermediate_size, 4]
    assert [int(x) for x in tensors["blk.1.ffn_down.weight.lora_b"].shape] == [4, c.hidden_size]

    alpha, factors = read_gguf_lora(path)
    assert alpha == pytest.approx(16.0)
    assert set(factors) == {f"model.layers.{i}.{leaf}" for i in range(c.num_hidden_layers) for leaf in LINEARS}
    for name, (a, b) in factors.items():  # Q/K rows back in Hugging Face order
        torch.testing.assert_close(torch.from_numpy(a), state[f"base_model.model.{name}.lora_A.weight"])
        torch.testing.assert_close(torch.from_numpy(b), state[f"base_model.model.{name}.lora_B.weight"])
    merged = _base(tiny_model_dir)
    with torch.no_grad():
        for name, (a, b) in factors.items():  # llama.cpp's rule: W + (alpha / r) * B @ A
            merged.get_submodule(name).weight += (alpha / a.shape[0]) * torch.from_numpy(b) @ torch.from_numpy(a)
        ids = _ids(merged)
        torch.testing.assert_close(merged(input_ids=ids).logits, peft(input_ids=ids).logits, atol=1e-4, rtol=0)


def test_gguf_adapter_lines_up_with_the_base_gguf(tmp_path, tiny_model_dir):
    """On the base's own GGUF tensors (as llama.cpp's converter lays them out: its names, Q/K rows permuted),
    W + (alpha/r) * B @ A of the adapter file gives the GGUF of the merged model."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    from tiny import write_tiny_gguf
    from transformers import AutoTokenizer

    peft, cfg, state = _adapted(tiny_model_dir, tmp_path, r=4, alpha=8.0)
    c = peft.config
    adapter = export_gguf(cfg, state, tmp_path / "a.gguf", arch="llama", n_head=c.num_attention_heads,
                          n_kv_head=c.num_key_value_heads)
    peft.merge_and_unload().save_pretrained(tmp_path / "merged")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "merged")
    base = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(write_tiny_gguf(tiny_model_dir, tmp_path / "b.gguf"))).tensors}
    merged = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(write_tiny_gguf(tmp_path / "merged", tmp_path / "m.gguf"))).tensors}
    reader = gguf.GGUFReader(str(adapter))
    alpha = reader.get_field("adapter.lora.alpha").contents()
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        name, _, factor = t.name.rpartition(".lora_")
        pairs.setdefault(name, {})[factor] = np.array(t.data)
    assert len(pairs) == len(LINEARS) * c.num_hidden_layers
    for name, f in pairs.items():
        got = base[name] + (alpha / f["a"].shape[0]) * f["b"] @ f["a"]
        np.testing.assert_allclose(got, merged[name], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("fmt", ["peft", "gguf"])
@pytest.mark.parametrize(
    "change, match",
    [
        ({"use_dora": True}, r"DoRA"),
        ({"modules_to_save": ["lm_head"]}, r"modules_to_save"),
        ({"rank_pattern": {"q_proj": 2}}, r"rank_pattern"),
        ({"init_lora_weights": "pissa"}, r"residual base"),
    ],
)
def test_exports_refuse_what_engines_cannot_serve(tmp_path, fmt, change, match):
    if fmt == "gguf":
        pytest.importorskip("gguf")
    out = tmp_path / ("out" if fmt == "peft" else "out.gguf")
    with pytest.raises(ValueError, match=match):
        if fmt == "peft":
            export_peft({**CLEAN, **change}, _state(), out)
        else:
            export_gguf({**CLEAN, **change}, _state(), out, arch="llama", n_head=2, n_kv_head=2)
    assert list(tmp_path.iterdir()) == []


def test_export_gguf_bad_arguments(tmp_path):
    pytest.importorskip("gguf")
    with pytest.raises(ValueError, match=r"arch: expected one of gemma, gemma2, llama, qwen2 .*got 'phi9'"):
        export_gguf(CLEAN, _state(), tmp_path / "x.gguf", arch="phi9")
    with pytest.raises(ValueError, match=r"pass n_head="):  # llama's Q rows need the head count
        export_gguf(CLEAN, _state(), tmp_path / "x.gguf", arch="llama")
    assert export_gguf(CLEAN, _state(), tmp_path / "q.gguf", arch="qwen2").exists()  # qwen2 keeps HF row order


def test_cli_export_and_validate(tmp_path, tiny_model_dir, facts, capsys):
    store = str(tmp_path / "store")
    train = TrainConfig(lr=5e-3, max_steps=3, progress=False, seq_len=128, batch_tokens=256)
    mem = KnowledgeMemory.open(store, model=str(tiny_model_dir), train=train, lora=LoraSpec(r=8, use_rslora=True),
                               synth=FAST_SYNTH)
    mem.write(facts[:2], namespace="people")
    module = mem.ls("people")[0].module_id
    mem.close()
    capsys.readouterr()
    at = [module, "--store", store]

    assert main(["validate", *at, "--for", "vllm"]) == 0
    assert f"{module} v1: ok for vllm" in capsys.readouterr().out
    assert main(["validate", *at, "--for", "llamacpp"]) == 1  # the raw folder's rsLoRA
    assert "rsLoRA" in capsys.readouterr().err
    assert main(["validate", *at, "--for", "vllm", "--max-lora-rank", "1"]) == 1
    assert "--max-lora-rank 8" in capsys.readouterr().err

    out = tmp_path / "peft"
    assert main(["export", *at, "--to", "peft", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert main(["validate", str(out), "--for", "llamacpp"]) == 0  # sqrt(r) folded into lora_alpha
    assert json.loads((out / "adapter_config.json").read_text())["lora_alpha"] == pytest.approx(8 * math.sqrt(8))
    assert main(["export", *at, "--to", "peft", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", *at, "--to", "peft", "--out", str(out), "--force"]) == 0
    assert main(["export", "nope", "--store", store, "--to", "peft", "--out", str(tmp_path / "x")]) == 2
    assert "no module 'nope'" in capsys.readouterr().err
    assert main(["export", *at, "--version", "7", "--to", "peft", "--out", str(tmp_path / "x")]) == 2
    assert "has no version 7 (kept: [1])" in capsys.readouterr().err

    pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    assert main(["export", *at, "--to", "gguf", "--out", str(path)]) == 0  # arch and heads from the base config
    alpha, factors = read_gguf_lora(path)
    assert alpha == pytest.approx(8 * math.sqrt(8), rel=1e-6)
    assert set(factors) == {f"model.layers.{i}.{leaf}" for i in range(2) for leaf in LINEARS}
