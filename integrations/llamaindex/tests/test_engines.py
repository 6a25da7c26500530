"""The parts assembled into LlamaIndex engines, end to end on the tiny model."""

from __future__ import annotations

from li_data import FAST, LORA, QUESTION
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.base.response.schema import Response
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.memory import Memory
from llama_index.core.query_engine import RetrieverQueryEngine

from llama_index.llms.loramem import LoRAMemoryLLM, LoRAMemoryQueryEngine, format_nodes
from llama_index.memory.loramem import LoRAMemoryBlock
from llama_index.retrievers.loramem import LoRAMemoryRetriever


def test_retriever_query_engine(store: str, tiny_model: str) -> None:
    llm = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="a", max_new_tokens=8)
    retriever = LoRAMemoryRetriever(store, tiny_model, namespace="a", similarity_top_k=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query(QUESTION)
    assert isinstance(response, Response) and isinstance(response.response, str)
    assert len(response.source_nodes) == 2
    assert response.source_nodes[0].node.get_content().endswith("A: blue")


async def test_async_query_engine(store: str, tiny_model: str) -> None:
    llm = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="b", max_new_tokens=8)
    retriever = LoRAMemoryRetriever(store, tiny_model, namespace="b", similarity_top_k=1)
    response = await RetrieverQueryEngine.from_args(retriever, llm=llm).aquery(QUESTION)
    assert isinstance(response, Response)
    assert response.source_nodes[0].node.get_content().endswith("A: green")


def test_context_chat_engine_with_lora_memory(store: str, tiny_model: str) -> None:
    llm = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="a", max_new_tokens=8)
    retriever = LoRAMemoryRetriever(store, tiny_model, namespace="a", similarity_top_k=1)
    lora_block = LoRAMemoryBlock(
        store_path=store, model_name=tiny_model, namespace="chat-e2e", train=FAST, lora=LORA
    )
    memory = Memory.from_defaults(
        session_id="e2e", memory_blocks=[lora_block], token_limit=40, token_flush_size=10
    )
    chat = ContextChatEngine.from_defaults(retriever, memory=memory, llm=llm)
    first = chat.chat("My name is Ada and I like tea.")
    assert isinstance(first.response, str) and first.source_nodes
    second = chat.chat(QUESTION)
    assert second.source_nodes[0].node.get_content().endswith("A: blue")
    streamed = chat.stream_chat("Thanks, and what else do you know?")
    assert isinstance("".join(streamed.response_gen), str)
    # The conversation outgrew the token limit: the oldest turns were consolidated into LoRA.
    assert lora_block.reports and lora_block.reports[0].namespace == "chat-e2e"
    assert all(isinstance(m, ChatMessage) for m in chat.chat_history)


def test_loramem_query_engine_reads_with_the_trained_context_layout(store: str, tiny_model: str) -> None:
    """The prompt is the one ``ask(context=...)`` builds (the layout context-mixed training uses)."""
    from loramem.text import render_context, with_context

    llm = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="a", max_new_tokens=8)
    retriever = LoRAMemoryRetriever(store, tiny_model, namespace="a", similarity_top_k=2)
    seen: list[str] = []
    real = llm.memory.chat

    def spy(conversations, **kw):  # type: ignore[no-untyped-def]
        seen.append(conversations[0][-1]["content"])
        return real(conversations, **kw)

    object.__setattr__(llm.memory, "chat", spy)
    try:
        response = LoRAMemoryQueryEngine(retriever=retriever, llm=llm).query(QUESTION)
    finally:
        object.__delattr__(llm.memory, "chat")
    texts = [n.node.get_content() for n in response.source_nodes]
    assert len(texts) == 2 and format_nodes(response.source_nodes) == render_context(texts)
    assert seen == [with_context(QUESTION, render_context(texts))]
    assert isinstance(response.response, str)
