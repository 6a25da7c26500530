"""LlamaIndex memory block that consolidates flushed chat messages into a LoRA memory module."""

from llama_index.memory.loramem.base import LoRAMemoryBlock

__all__ = ["LoRAMemoryBlock"]
