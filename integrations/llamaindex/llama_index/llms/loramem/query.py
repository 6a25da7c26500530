"""A query engine that puts retrieved nodes before the question exactly as loramem trains and reads contexts.

LlamaIndex's own engines format retrieved text with their templates ("Context information is below. ...",
nodes joined by blank lines); a loramem module is trained (context-mixed training) on the layout of
``KnowledgeMemory.ask(context=...)``: the context lines joined by ``loramem.text.render_context``, a blank
line, the question. ``LoRAMemoryQueryEngine`` reads with that layout, so LoRA + retrieval asks the module in
the shape it was taught; ``format_nodes`` is the same builder for custom pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore

from llama_index.llms.loramem.base import LoRAMemoryLLM
from loramem.text import render_context, with_context


def format_nodes(nodes: Sequence[NodeWithScore]) -> str:
    """Retrieved nodes as context text, in order: ``loramem.text.render_context`` of their contents."""
    return render_context([n.node.get_content() for n in nodes])


class LoRAMemoryQueryEngine(CustomQueryEngine):
    """Retrieve, then ask ``llm`` with the nodes as context in loramem's trained layout (one user turn).

    ``LoRAMemoryQueryEngine(retriever=index.as_retriever(similarity_top_k=3), llm=LoRAMemoryLLM(...))``."""

    retriever: BaseRetriever
    llm: LoRAMemoryLLM

    def custom_query(self, query_str: str) -> Any:
        nodes = self.retriever.retrieve(query_str)
        prompt = with_context(query_str, format_nodes(nodes) if nodes else None)
        return Response(self.llm.complete(prompt).text, source_nodes=list(nodes))

    async def acustom_query(self, query_str: str) -> Any:
        nodes = await self.retriever.aretrieve(query_str)
        prompt = with_context(query_str, format_nodes(nodes) if nodes else None)
        return Response((await self.llm.acomplete(prompt)).text, source_nodes=list(nodes))
