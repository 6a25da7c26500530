"""LlamaIndex LLM over a loramem store: generation with a LoRA memory module active, and a query engine that
puts retrieved nodes before the question in the layout modules are trained on."""

from llama_index.llms.loramem.base import LoRAMemoryLLM
from llama_index.llms.loramem.query import LoRAMemoryQueryEngine, format_nodes

__all__ = ["LoRAMemoryLLM", "LoRAMemoryQueryEngine", "format_nodes"]
