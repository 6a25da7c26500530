"""LlamaIndex LLM over a loramem store: generation with a LoRA memory module active."""

from llama_index.llms.loramem.base import LoRAMemoryLLM

__all__ = ["LoRAMemoryLLM"]
