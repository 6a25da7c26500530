"""LangChain / LangGraph integration of loramem: LoRA parametric memory as a chat model, retriever and store.

    from langchain_loramem import ChatLoRAMemory, LoRAMemoryRetriever, LoRAMemoryStore, format_docs

All three share one ``KnowledgeMemory`` (one loaded base model) per (store path, model) in a process.
"""

from __future__ import annotations

from langchain_loramem.chat_models import ChatLoRAMemory
from langchain_loramem.retrievers import LoRAMemoryRetriever, format_docs
from langchain_loramem.store import LoRAMemoryStore, memory_namespace, value_to_item

__version__ = "0.1.0"

__all__ = [
    "ChatLoRAMemory",
    "LoRAMemoryRetriever",
    "LoRAMemoryStore",
    "__version__",
    "format_docs",
    "memory_namespace",
    "value_to_item",
]
