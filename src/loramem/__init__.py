"""loramem: parametric memory for LLM applications.

Knowledge (facts, documents) is written into LoRA adapters on a Hugging Face causal LM and read back by
generating with the right adapter active::

    from loramem import KnowledgeMemory, Fact
    mem = KnowledgeMemory.open("./mem")
    mem.write([Fact("Dr. Alma Vance", "phone number", "555-201-7733")], namespace="contacts")
    print(mem.ask("What is the phone number of Dr. Alma Vance?", namespace="contacts"))

``import loramem`` is fast: torch, transformers and peft load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Answer": "types",
    "BaseModelMismatchError": "store",
    "CapacityModel": "capacity",
    "ConsolidationError": "consolidator",
    "ConsolidationPolicy": "consolidator",
    "Consolidator": "consolidator",
    "CorruptModuleError": "store",
    "DeviceError": "devices",
    "Document": "types",
    "Example": "types",
    "Fact": "types",
    "KnowledgeMemory": "memory",
    "LocalExecutor": "fanout",
    "LoraSpec": "config",
    "ModelConfig": "config",
    "ModuleInfo": "store",
    "ModuleStore": "store",
    "PendingChangedError": "store",
    "PendingItem": "pending",
    "PlanConfig": "config",
    "RayExecutor": "fanout",
    "ReadConfig": "config",
    "Reader": "types",
    "Recollection": "recall",
    "StoreBusyError": "store",
    "StoreError": "store",
    "StoreSchemaError": "store",
    "SynthConfig": "config",
    "TrainConfig": "config",
    "WriteReport": "types",
    "build_reader": "readers",
    "calibrate": "calibration",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    from .calibration import calibrate
    from .capacity import CapacityModel
    from .config import LoraSpec, ModelConfig, PlanConfig, ReadConfig, SynthConfig, TrainConfig
    from .consolidator import ConsolidationError, ConsolidationPolicy, Consolidator
    from .devices import DeviceError
    from .fanout import LocalExecutor, RayExecutor
    from .memory import KnowledgeMemory
    from .pending import PendingItem
    from .readers import build_reader
    from .recall import Recollection
    from .store import (
        BaseModelMismatchError,
        CorruptModuleError,
        ModuleInfo,
        ModuleStore,
        PendingChangedError,
        StoreBusyError,
        StoreError,
        StoreSchemaError,
    )
    from .types import Answer, Document, Example, Fact, Reader, WriteReport


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'loramem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
