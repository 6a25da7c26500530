"""Pinned exports and the PEP 420 namespace layout."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]

EXPORTS = {
    "llama_index.llms.loramem": ["LoRAMemoryLLM", "LoRAMemoryQueryEngine", "format_nodes"],
    "llama_index.retrievers.loramem": ["LoRAMemoryRetriever"],
    "llama_index.memory.loramem": ["LoRAMemoryBlock"],
}


@pytest.mark.parametrize(("module", "names"), EXPORTS.items())
def test_all_is_pinned_and_sorted(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == names
    assert mod.__all__ == sorted(mod.__all__)
    for name in names:
        assert hasattr(mod, name)


@pytest.mark.parametrize(
    "folder", ["llama_index", "llama_index/llms", "llama_index/retrievers", "llama_index/memory"]
)
def test_namespace_folders_have_no_init(folder: str) -> None:
    assert (PACKAGE / folder).is_dir()
    assert not (PACKAGE / folder / "__init__.py").exists()


def test_classes_subclass_the_framework_bases() -> None:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.llms.base import BaseLLM
    from llama_index.core.llms.custom import CustomLLM
    from llama_index.core.memory.memory import BaseMemoryBlock

    from llama_index.llms.loramem import LoRAMemoryLLM
    from llama_index.memory.loramem import LoRAMemoryBlock
    from llama_index.retrievers.loramem import LoRAMemoryRetriever

    for cls, base in [
        (LoRAMemoryLLM, BaseLLM),
        (LoRAMemoryLLM, CustomLLM),
        (LoRAMemoryRetriever, BaseRetriever),
        (LoRAMemoryBlock, BaseMemoryBlock),
    ]:
        assert base.__name__ in [b.__name__ for b in cls.__mro__]
