from __future__ import annotations

import langchain_loramem

EXPECTED_ALL = [
    "ChatLoRAMemory",
    "LoRAMemoryRetriever",
    "LoRAMemoryStore",
    "__version__",
    "format_docs",
    "memory_namespace",
    "value_to_item",
]


def test_all_imports() -> None:
    assert langchain_loramem.__all__ == EXPECTED_ALL
    assert sorted(langchain_loramem.__all__) == langchain_loramem.__all__
    for name in EXPECTED_ALL:
        assert hasattr(langchain_loramem, name)
