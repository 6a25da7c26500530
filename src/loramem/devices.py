"""Devices and dtypes: what ``ModelConfig(device=..., dtype=...)`` resolves to, and where tensors go.

``device="auto"`` picks the first CUDA device when torch sees one, else Apple's MPS, else the CPU.
``dtype="auto"`` picks bfloat16 on a CUDA device that supports it, float32 everywhere else (on a CPU float32 is
the fast path; on a CUDA device without bf16, float16 weights would need loss scaling for training, so auto
stays at float32 there too). Every batch is built on the CPU and moved to ``model_device(model)`` before the
model sees it. Training and scoring run under ``autocast(model)``: bf16 (or fp16) autocast on CUDA when the
weights are in that dtype, so the fp32 LoRA factors peft keeps compute in the weights' precision; nothing on a
CPU. Layer 0: imports only torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class DeviceError(ValueError):
    """A device or dtype that does not exist here, or that this hardware cannot run."""


def resolve_device(spec: str) -> Any:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` -> a ``torch.device`` that exists on this machine."""
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested, but this torch build or machine has no Apple MPS backend")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise DeviceError(f"device {spec!r}: expected 'cuda' or 'cuda:N' with N a device index")
        if not torch.cuda.is_available():
            built = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA device"
            raise DeviceError(f"device {spec!r} requested, but torch sees no CUDA device here ({built})")
        count = torch.cuda.device_count()
        if int(index_text) >= count:
            raise DeviceError(f"device {spec!r} does not exist: torch sees {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return torch.device("cuda", int(index_text))
    raise DeviceError(f"unknown device {spec!r}: expected one of {', '.join(DEVICES)}")


def resolve_dtype(spec: str, device: Any) -> Any:
    """``"auto" | "float32" | "bfloat16" | "float16"`` -> a ``torch.dtype`` the device can run."""
    import torch

    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if spec not in DTYPES:
        raise DeviceError(f"unknown dtype {spec!r}: expected one of {', '.join(DTYPES)}")
    if spec == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise DeviceError(f"dtype 'bfloat16' requested on {name} ({device}), which does not support it; "
                          "use dtype='float16' or 'float32'")
    return getattr(torch, spec)


def model_device(model: Any) -> Any:
    """Where a model's inputs go: the device of its input embeddings (the first shard under a device_map)."""
    return _first_weight(model).device


def model_dtype(model: Any) -> Any:
    return _first_weight(model).dtype


def _first_weight(model: Any) -> Any:
    """The input embeddings' weight, else the first parameter, else a CPU fp32 stand-in (a duck-typed model)."""
    import torch

    try:
        return model.get_input_embeddings().weight
    except (AttributeError, NotImplementedError):
        pass
    try:
        return next(model.parameters())
    except (AttributeError, StopIteration, TypeError):
        return torch.empty(0)


@contextlib.contextmanager
def autocast(model: Any) -> Iterator[None]:
    """bf16/fp16 autocast on CUDA when the base weights are in that dtype; nothing otherwise."""
    import torch

    device, dtype = model_device(model), model_dtype(model)
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cuda", dtype=dtype):
            yield
    else:
        yield


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
