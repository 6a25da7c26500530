"""LlamaIndex retriever over a loramem store: nodes recalled by generating with a LoRA memory module."""

from llama_index.retrievers.loramem.base import LoRAMemoryRetriever

__all__ = ["LoRAMemoryRetriever"]
