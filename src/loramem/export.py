"""Serving modules elsewhere: what vLLM and llama.cpp accept, and the two formats loramem exports.

- ``validate_for(engine, adapter_config, state)``: the problems an engine would have with a PEFT folder (an
  empty list when it loads as trained); ``check_for`` raises them. The rules are what vLLM 0.32 (on CPU)
  and llama.cpp's ``convert_lora_to_gguf.py`` were seen to refuse or mis-scale.
- ``export_peft``: a PEFT folder that vLLM, LoRAX, SGLang and Ollama load: rsLoRA folded into ``lora_alpha``,
  ``init_lora_weights: true``, no ``modules_to_save``; the tensors unchanged.
- ``export_gguf``: a llama.cpp LoRA adapter written with the ``gguf`` package's writer, named and laid out
  as ``convert_lora_to_gguf.py`` writes it; ``read_gguf_lora`` reads one back under Hugging Face names.
- ``export_module``: a store's module (any kept version) to either format.

Layer 4: imports the store and models, not the facade; a memory is accepted by its ``store`` attribute.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ._fs import fsync_dir, fsync_tree
from .store import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ModuleInfo, ModuleStore

Engine = Literal["llamacpp", "vllm"]
ENGINES: tuple[str, ...] = ("llamacpp", "vllm")
# The only values vLLM 0.32 accepts for --max-lora-rank (its default is 16).
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Initialisations that rewrite the base weights: their factors apply to a residual base, not the checkpoint,
# until converted to plain LoRA (PEFT's path_initial_model_for_weight_conversion; loramem stores PiSSA converted).
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")
# llama.cpp architectures this exporter writes -> whether llama.cpp stores Q/K rows in its own rotary order
# (convert_hf_to_gguf.py's LlamaModel.permute), so lora_b of q_proj/k_proj is permuted the same way.
GGUF_ARCHS: dict[str, bool] = {"llama": True, "qwen2": False, "gemma": False, "gemma2": False}
# Hugging Face config.json model_type -> llama.cpp architecture.
MODEL_TYPES: dict[str, str] = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma": "gemma",
                               "gemma2": "gemma2"}
# The decoder-layer linears of these architectures, as Hugging Face names them (read_gguf_lora maps back).
_HF_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_HEADS, _HEADS_KV = "loramem.head_count", "loramem.head_count_kv"


def _layer_of(key: str) -> int:
    return int(found.group(1)) if (found := _LAYER.search(key)) is not None else -1


# --- validation --------------------------------------------------------------------------------------------


def _rank(cfg: Mapping[str, Any], state: Mapping[str, Any] | None) -> int:
    ranks = [int(cfg.get("r") or 0), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())]
    ranks += [int(tuple(t.shape)[0]) for k, t in (state or {}).items() if k.endswith("lora_A.weight")]
    return max(ranks)


def _is_dora(cfg: Mapping[str, Any], state: Mapping[str, Any] | None) -> bool:
    return bool(cfg.get("use_dora")) or any("lora_magnitude_vector" in k for k in state or {})


def _base_changing_init(cfg: Mapping[str, Any]) -> str | None:
    init = cfg.get("init_lora_weights", True)
    return init if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS) else None


def _foreign_tensors(state: Mapping[str, Any] | None) -> list[str]:
    """Tensors that are neither LoRA factors nor DoRA magnitudes (whole modules saved, trained biases)."""
    return sorted(k for k in state or {} if not _LORA_KEY.match(k) and "lora_magnitude_vector" not in k)


def validate_for(
    engine: Engine, adapter_config: Mapping[str, Any], state: Mapping[str, Any] | None = None, *,
    max_lora_rank: int = 64,
) -> list[str]:
    """What ``engine`` would refuse or get wrong in this PEFT adapter; an empty list when it serves it as trained.

    ``state`` (the safetensors tensors, optional) adds the checks that need them: DoRA magnitudes, non-LoRA
    tensors, the actual rank. ``max_lora_rank`` is vLLM's ``--max-lora-rank`` the adapter must fit under.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "vllm" and max_lora_rank not in VLLM_MAX_LORA_RANKS:
        raise ValueError(f"max_lora_rank: expected one of vLLM's values {VLLM_MAX_LORA_RANKS}, got {max_lora_rank!r}")
    cfg = adapter_config
    problems: list[str] = []
    if _is_dora(cfg, state):
        problems.append(f"DoRA (use_dora): {'vLLM' if engine == 'vllm' else 'llama.cpp'} refuses DoRA adapters "
                        "(LoRAX would drop the magnitude vectors silently); write the module without DoRA")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {list(cfg['modules_to_save'])}: "
                        + ("vLLM refuses adapters that carry whole modules" if engine == "vllm" else
                           "llama.cpp's convert_lora_to_gguf.py refuses adapters that carry whole modules"))
    foreign = _foreign_tensors(state)
    if foreign:
        problems.append(f"{len(foreign)} tensor(s) that are not LoRA factors (e.g. {foreign[0]!r}): only "
                        "lora_A/lora_B weights are served")
    init = cfg.get("init_lora_weights", True)
    base_changing = _base_changing_init(cfg)
    if engine == "vllm":
        if not isinstance(init, bool):
            hint = ("its factors apply to the residual base: convert it to plain LoRA of rank 2r first"
                    if base_changing else "`loramem export --to peft` writes true")
            problems.append(f"init_lora_weights is {init!r}: vLLM accepts only true or false; {hint}")
        r = _rank(cfg, state)
        if r > VLLM_MAX_LORA_RANKS[-1]:
            problems.append(f"rank {r} is above {VLLM_MAX_LORA_RANKS[-1]}, the largest --max-lora-rank vLLM accepts: "
                            "write the module at a lower rank")
        elif r > max_lora_rank:
            need = next(v for v in VLLM_MAX_LORA_RANKS if v >= r)
            problems.append(f"rank {r} is above vLLM's --max-lora-rank {max_lora_rank}: start vLLM with "
                            f"--max-lora-rank {need} (allowed values {VLLM_MAX_LORA_RANKS}; vLLM's default is 16)")
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg.get(key):
                problems.append(f"{key} {dict(cfg[key])}: vLLM ignores per-module patterns and would serve those "
                                "modules at the wrong rank or scale; write the module with one rank and alpha")
    else:
        if base_changing:
            problems.append(f"init_lora_weights is {init!r}: its factors apply to the residual base, not the "
                            "checkpoint llama.cpp loads; convert it to plain LoRA of rank 2r first")
        if cfg.get("use_rslora"):
            problems.append("rsLoRA (use_rslora): llama.cpp scales by alpha/r, not alpha/sqrt(r), so this folder "
                            "would be served sqrt(r) times too weak; export it with `loramem export --to gguf` "
                            "(or `--to peft`), which fold sqrt(r) into lora_alpha")
        if cfg.get("alpha_pattern"):
            problems.append(f"alpha_pattern {dict(cfg['alpha_pattern'])}: llama.cpp has one adapter.lora.alpha for "
                            "every tensor; write the module with one alpha")
    return problems


def check_for(engine: Engine, adapter_config: Mapping[str, Any], state: Mapping[str, Any] | None = None, *,
              max_lora_rank: int = 64) -> None:
    """``validate_for``, raising a ValueError that names every problem."""
    if problems := validate_for(engine, adapter_config, state, max_lora_rank=max_lora_rank):
        raise ValueError(f"adapter not servable by {engine}: " + "; ".join(problems))


def folded_alpha(adapter_config: Mapping[str, Any]) -> float:
    """The lora_alpha that gives plain LoRA (scale alpha/r) the adapter's scale: alpha*sqrt(r) for rsLoRA
    (whose scale is alpha/sqrt(r)), alpha otherwise."""
    alpha, r = float(adapter_config["lora_alpha"]), int(adapter_config["r"])
    return alpha * math.sqrt(r) if adapter_config.get("use_rslora") else alpha


def _refuse(cfg: Mapping[str, Any], state: Mapping[str, Any], to: str) -> None:
    """Raise for what neither export format can carry, naming each reason."""
    problems: list[str] = []
    if _is_dora(cfg, state):
        problems.append("DoRA (use_dora): no serving engine applies DoRA's magnitude vectors as trained; write "
                        "the module without DoRA")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {list(cfg['modules_to_save'])}: engines refuse whole saved modules")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            problems.append(f"{key} {dict(cfg[key])}: engines apply one rank and alpha (vLLM ignores patterns, "
                            "llama.cpp has one alpha), so the export would change those modules' scale")
    base_changing = _base_changing_init(cfg)
    if base_changing:
        problems.append(f"init_lora_weights {base_changing!r}: the factors apply to the residual base; convert "
                        "to plain LoRA (PEFT's path_initial_model_for_weight_conversion) first")
    foreign = _foreign_tensors(state)
    if foreign:
        problems.append(f"{len(foreign)} tensor(s) that are not LoRA factors, e.g. {foreign[0]!r}")
    if problems:
        raise ValueError(f"cannot export to {to}: " + "; ".join(problems))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"adapter_config: {type(value).__name__} is not JSON serialisable")


def _target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not overwrite:
        raise ValueError(f"{str(out)!r} exists: pass overwrite=True (--force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _place(tmp: Path, out: Path) -> None:
    """Move a finished, fsynced ``tmp`` (file or folder) to ``out`` in one rename; an old ``out`` goes after."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}") if out.exists() else None
    if old is not None:
        os.rename(out, old)
    os.rename(tmp, out)
    fsync_dir(out.parent)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def export_peft(
    adapter_config: Mapping[str, Any], state: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
    overwrite: bool = False,
) -> Path:
    """Write a PEFT folder every engine loads as trained; returns its path. rsLoRA is folded into ``lora_alpha``
    (alpha' = alpha*sqrt(r), so alpha'/r = alpha/sqrt(r); ``use_rslora`` false), ``init_lora_weights`` is true,
    ``modules_to_save`` none; tensors and their PEFT key names are unchanged. DoRA, saved modules and rank/alpha
    patterns are refused. Atomic: built aside, fsynced, renamed into place."""
    from safetensors.torch import save_file

    _refuse(adapter_config, state, "peft")
    alpha = folded_alpha(adapter_config)
    cfg = {**adapter_config, "lora_alpha": int(alpha) if alpha.is_integer() else alpha, "use_rslora": False,
           "use_dora": False, "init_lora_weights": True, "modules_to_save": None, "rank_pattern": {},
           "alpha_pattern": {}, "inference_mode": True}
    cfg.setdefault("peft_type", "LORA")
    out = _target(out_dir, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / ADAPTER_WEIGHTS),
                  metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=_json_default) + "\n",
                                          encoding="utf-8")
        fsync_tree(tmp)
        _place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ImportError("GGUF export needs the gguf package: pip install gguf (or 'loramem[embedded]')") from None
    return gguf


def _rope_permute(b: Any, n_head: int, inverse: bool = False) -> Any:
    """Rows of lora_b (out, r) in llama.cpp's rotary order, as its converter permutes the base's Q/K weights
    (``inverse``: back to Hugging Face order)."""
    half = b.shape[0] // n_head // 2
    heads = (n_head, half, 2) if inverse else (n_head, 2, half)
    return b.reshape(*heads, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _pairs(state: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """HF module name -> (A [r, in], B [out, r]) from PEFT state-dict keys."""
    found: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        m = _LORA_KEY.match(key)
        if m is None:
            raise ValueError(f"state: {key!r} is not a lora_A/lora_B weight (embedding LoRA and biases are not "
                             "exported to GGUF)")
        found.setdefault(m["module"], {})[m["factor"]] = tensor
    out: dict[str, tuple[Any, Any]] = {}
    for module, f in found.items():
        if set(f) != {"A", "B"}:
            raise ValueError(f"state: {module!r} has lora_{'A' if 'A' in f else 'B'} but not its pair")
        a, b = tuple(f["A"].shape), tuple(f["B"].shape)
        if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            raise ValueError(f"state: {module!r} factors A {a} and B {b} are not [r, in] and [out, r]")
        out[module] = (f["A"], f["B"])
    return out


def export_gguf(
    adapter_config: Mapping[str, Any], state: Mapping[str, Any], out_path: str | os.PathLike[str], *,
    arch: str, n_layers: int | None = None, n_head: int | None = None, n_kv_head: int | None = None,
    dtype: Literal["float32", "float16"] = "float32", name: str | None = None, overwrite: bool = False,
) -> Path:
    """Write a llama.cpp LoRA adapter (``llama-server --lora FILE``); returns its path.

    Metadata: ``general.architecture`` = ``arch``, ``general.type`` = adapter, ``adapter.type`` = lora,
    ``adapter.lora.alpha`` = the alpha with rsLoRA folded in (llama.cpp scales by alpha/r). Per adapted linear
    ``<tensor>.weight.lora_a`` (A, [r, in] row-major, i.e. ggml ne = [in, r]) and ``.lora_b`` (B, [out, r]),
    names from gguf's TensorNameMap for ``arch`` over ``n_layers`` blocks (default: the state's highest layer
    index + 1). For ``llama`` the rows of q/k's B are permuted as llama.cpp stores the base's Q/K, which needs
    ``n_head`` / ``n_kv_head`` (num_attention_heads / num_key_value_heads of the base config).
    """
    import numpy as np

    gguf = _gguf()
    if arch not in GGUF_ARCHS:
        raise ValueError(f"arch: expected one of {', '.join(sorted(GGUF_ARCHS))} (the llama.cpp architectures "
                         f"written here), got {arch!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
    _refuse(adapter_config, state, "gguf")
    pairs = _pairs(state)
    if not pairs:
        raise ValueError("state: no LoRA factors to export")
    blocks = n_layers if n_layers is not None else max((_layer_of(k) for k in pairs), default=-1) + 1
    model_arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    tmap = gguf.get_tensor_name_map(model_arch, blocks)
    tensors: list[tuple[str, Any, Any]] = []
    unmapped: list[str] = []
    permuted = False
    for module in sorted(pairs, key=lambda k: (_layer_of(k), k)):
        found = tmap.get_type_and_name(module)
        if found is None:
            unmapped.append(module)
            continue
        kind, gname = found
        a, b = (t.detach().to("cpu").float().numpy() if hasattr(t, "detach") else np.asarray(t, np.float32)
                for t in pairs[module])
        if GGUF_ARCHS[arch] and kind in (gguf.MODEL_TENSOR.ATTN_Q, gguf.MODEL_TENSOR.ATTN_K):
            if n_head is None:
                raise ValueError(f"arch {arch!r} stores Q/K rows in llama.cpp's rotary order: pass n_head= and "
                                 "n_kv_head= (the base config's num_attention_heads / num_key_value_heads)")
            heads = n_head if kind == gguf.MODEL_TENSOR.ATTN_Q else (n_kv_head or n_head)
            if b.shape[0] % (2 * heads):
                raise ValueError(f"{module}: {b.shape[0]} output rows do not split into {heads} heads of pairs")
            b, permuted = _rope_permute(b, heads), True
        tensors.append((f"{gname}.weight", np.ascontiguousarray(a, dtype), np.ascontiguousarray(b, dtype)))
    if unmapped:
        raise ValueError(f"no llama.cpp tensor for {unmapped[:3]} in arch {arch!r} with {blocks} layer(s) "
                         "(pass n_layers= if the base has more layers than the adapter touches)")
    out = _target(out_path, overwrite)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, folded_alpha(adapter_config))
        w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "float32" else gguf.LlamaFileType.MOSTLY_F16)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if name:
            w.add_name(name)
        if permuted:  # lets read_gguf_lora give B back in Hugging Face row order (llama.cpp ignores these keys)
            w.add_uint32(_HEADS, int(n_head or 0))
            w.add_uint32(_HEADS_KV, int(n_kv_head or n_head or 0))
        for gname, a, b in tensors:  # numpy row-major [r, in] / [out, r]; the writer stores dims reversed
            w.add_tensor(f"{gname}.lora_a", a)
            w.add_tensor(f"{gname}.lora_b", b)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _place(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def read_gguf_lora(
    path: str | os.PathLike[str], *, n_head: int | None = None, n_kv_head: int | None = None,
) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """(adapter.lora.alpha, {HF module name: (A [r, in], B [out, r])}) of a llama.cpp LoRA GGUF, as float32
    numpy arrays. Names the architectures in ``GGUF_ARCHS`` know come back as ``model.layers.<i>.<linear>``,
    others as the GGUF tensor name; Q/K rows of ``llama`` are put back in HF order (head counts from the file
    loramem wrote, or ``n_head`` / ``n_kv_head`` for a file from llama.cpp's converter)."""
    import numpy as np

    gguf = _gguf()
    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.get_field(key)
        return f.contents() if f is not None else None

    if field(gguf.Keys.General.TYPE) != gguf.GGUFType.ADAPTER or field(gguf.Keys.Adapter.TYPE) != "lora":
        raise ValueError(f"{str(path)!r} is not a llama.cpp LoRA adapter (general.type "
                         f"{field(gguf.Keys.General.TYPE)!r}, adapter.type {field(gguf.Keys.Adapter.TYPE)!r})")
    arch = field(gguf.Keys.General.ARCHITECTURE)
    alpha = float(field(gguf.Keys.Adapter.LORA_ALPHA) or 0.0)
    heads, heads_kv = n_head or field(_HEADS), n_kv_head or field(_HEADS_KV) or n_head or field(_HEADS)
    factors: dict[str, dict[str, Any]] = {}
    for t in reader.tensors:
        base, _, factor = t.name.rpartition(".lora_")
        if factor in ("a", "b"):
            factors.setdefault(base, {})[factor] = np.array(t.data, dtype=np.float32)
    blocks = max((int(m.group(1)) for k in factors if (m := re.match(r"blk\.(\d+)\.", k))), default=-1) + 1
    model_arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    tmap = gguf.get_tensor_name_map(model_arch, blocks) if model_arch is not None else None
    to_hf: dict[str, str] = {}
    if arch in GGUF_ARCHS and tmap is not None:
        for bid in range(blocks):
            for leaf in _HF_LINEARS:
                gname = tmap.get_name(f"model.layers.{bid}.{leaf}")
                if gname is not None:
                    to_hf[f"{gname}.weight"] = f"model.layers.{bid}.{leaf}"
    out: dict[str, tuple[Any, Any]] = {}
    for base, f in factors.items():
        if set(f) != {"a", "b"}:
            raise ValueError(f"{str(path)!r}: {base} has lora_{'a' if 'a' in f else 'b'} but not its pair")
        a, b = f["a"], f["b"]
        kind = tmap.get_type(base.removesuffix(".weight")) if tmap is not None else None
        if GGUF_ARCHS.get(arch) and kind in (gguf.MODEL_TENSOR.ATTN_Q, gguf.MODEL_TENSOR.ATTN_K):
            if not heads:
                raise ValueError(f"{str(path)!r}: Q/K rows are in llama.cpp's rotary order; pass n_head= and "
                                 "n_kv_head= to read them back in Hugging Face order")
            b = _rope_permute(b, int(heads if kind == gguf.MODEL_TENSOR.ATTN_Q else heads_kv), inverse=True)
        out[to_hf.get(base, base)] = (a, b)
    return alpha, out


# --- modules of a store ------------------------------------------------------------------------------------


def module_info(store: ModuleStore, module_id: str, version: int | None = None) -> ModuleInfo:
    """The active version of ``module_id``, or version ``version`` while it is kept (``gc`` drops old ones)."""
    info = store.module(module_id)
    if version is None or version == info.version:
        return info
    rows = store.query("SELECT path, sha256 FROM versions WHERE module_id=? AND version=?", (module_id, version))
    if not rows:
        kept = store.query("SELECT version FROM versions WHERE module_id=? ORDER BY version", (module_id,))
        raise KeyError(f"module {module_id!r} has no version {version} (kept: {[r[0] for r in kept]})")
    return dataclasses.replace(info, version=version, path=store.root / rows[0][0], sha256=rows[0][1])


def load_peft_folder(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(adapter_config, state) of a PEFT folder on disk (safetensors only; nothing is unpickled)."""
    from safetensors.torch import load_file

    folder = Path(path)
    for f in (folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS):
        if not f.exists():
            raise ValueError(f"{str(folder)!r} is not a PEFT folder: no {f.name}")
    cfg = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return cfg, load_file(str(folder / ADAPTER_WEIGHTS))


def base_config(model: str) -> dict[str, Any] | None:
    """The base model's config.json (alias, local folder or cached hub id), or None where it cannot be read.
    An alias is converted on first use (what writing on it did already)."""
    from .models import resolve

    try:
        source = resolve(model)
    except (ValueError, ImportError):
        return None
    path = Path(source) / "config.json"
    if not path.exists():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "config.json"))
        except Exception:  # offline, unknown repo, gated: the caller says what to pass instead
            return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def gguf_arch(config: Mapping[str, Any]) -> str:
    """llama.cpp's architecture name for a Hugging Face config.json."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} has no GGUF adapter export here: expected one of "
                         f"{', '.join(sorted(MODEL_TYPES))} (or pass arch=)")
    return MODEL_TYPES[str(model_type)]


def export_module(
    source: Any, module_id: str, *, to: Literal["peft", "gguf"], out: str | os.PathLike[str],
    version: int | None = None, arch: str | None = None, dtype: Literal["float32", "float16"] = "float32",
    overwrite: bool = False,
) -> Path:
    """Export a module of a store (a ``ModuleStore``, a memory, or a store folder) to a PEFT folder or a
    llama.cpp GGUF; returns the path written. ``version``: a kept older version (default the active one).
    For GGUF the architecture and head counts come from the base model the module records, or ``arch=``."""
    if to not in ("peft", "gguf"):
        raise ValueError(f"to: expected 'peft' or 'gguf', got {to!r}")
    opened: ModuleStore | None = None
    if isinstance(source, ModuleStore):
        store = source
    elif isinstance(getattr(source, "store", None), ModuleStore):
        store = source.store
    elif isinstance(source, (str, os.PathLike)):
        store = opened = ModuleStore(source)
    else:
        raise TypeError(f"source: expected a ModuleStore, a memory or a store folder, got {type(source).__name__}")
    try:
        info = module_info(store, module_id, version)
        cfg, state = store.load_adapter(info)
    finally:
        if opened is not None:
            opened.close()
    if to == "peft":
        return export_peft(cfg, state, out, overwrite=overwrite)
    base = base_config(info.base_model)
    if base is None and arch is None:
        raise ValueError(f"cannot read the config.json of base model {info.base_model!r} to name the llama.cpp "
                         f"architecture: pass arch= (--arch), one of {', '.join(sorted(GGUF_ARCHS))}")
    base = base or {}
    return export_gguf(
        cfg, state, out, arch=arch or gguf_arch(base), n_layers=base.get("num_hidden_layers"),
        n_head=base.get("num_attention_heads"), n_kv_head=base.get("num_key_value_heads"), dtype=dtype,
        name=f"{info.module_id} v{info.version}", overwrite=overwrite,
    )
