"""LoRAMemoryBlock inside llama_index.core.memory.Memory: flushed messages are remembered in the core's buffer
(answered at once, durable), consolidated into LoRA by count, then recalled."""

from __future__ import annotations

from typing import Any

import pytest
from li_data import FAST, LORA
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.memory import Memory
from loramem import Document

from llama_index.llms.loramem.base import shared_memory
from llama_index.memory.loramem import LoRAMemoryBlock

TURNS = [
    ("user", "My dog is called Rex."),
    ("assistant", "Nice name."),
    ("user", "I live in Berlin."),
    ("assistant", "Berlin is in Germany."),
    ("user", "What is my dog called?"),
    ("assistant", "Rex."),
]


def messages() -> list[ChatMessage]:
    return [ChatMessage(role=role, content=text) for role, text in TURNS]


def block(store: str, model: str, **kwargs: Any) -> LoRAMemoryBlock:
    return LoRAMemoryBlock(
        store_path=store, model_name=model, namespace="chat", train=FAST, lora=LORA, **kwargs
    )


def spy_on_ask(mem: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the answers ``mem.ask`` gives (their ``details["pending"]`` say which pending items were read)."""
    real, answers = mem.ask, []

    def ask(*args: Any, **kwargs: Any) -> Any:
        answers.append(real(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(mem, "ask", ask)
    return answers


async def test_a_flush_is_remembered_and_answered_before_consolidation(
    empty_store: str, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lora_block = block(empty_store, tiny_model, consolidate_every=None)
    memory = Memory.from_defaults(
        session_id="s1",
        memory_blocks=[lora_block],
        token_limit=30,
        token_flush_size=10,
        async_database_uri="sqlite+aiosqlite:///:memory:",
    )
    mem = shared_memory(empty_store, tiny_model)
    answers = spy_on_ask(mem, monkeypatch)
    # Nothing flushed yet: the block contributes nothing and asks nothing.
    await memory.aput(ChatMessage(role="user", content="Hello"))
    assert not any("<lora_memory>" in (m.content or "") for m in await memory.aget(input="Hi"))
    assert answers == [] and lora_block.pending == []

    await memory.aput_messages(messages())  # over the token limit: the oldest turns flush into the block
    pending = lora_block.pending
    assert len(pending) == 1, "no flushed message reached the block"
    doc = pending[0].item
    assert isinstance(doc, Document) and pending[0].namespace == "chat"
    assert "My dog is called Rex." in doc.text.splitlines()
    assert "Nice name" not in doc.text  # only the user's turns are kept by default
    assert doc.metadata["session_ids"] == ["s1"] and doc.metadata["key"] == f"llama_index.memory:{doc.id}"
    assert lora_block.reports == [] and mem.items("chat") == [] and mem.ls("chat") == []  # nothing trained

    # The core's ask reads the buffer: the pending transcript is in the question's context.
    recalled = await lora_block.aget([ChatMessage(role="user", content="What is my dog called?")])
    assert len(answers) == 1 and answers[0].details["pending"] == [doc.id]
    assert answers[0].reader.endswith("+pending")
    assert recalled == (f"Q: What is my dog called?\nA: {answers[0].text}" if answers[0].text else "")
    history = await memory.aget(input="What is my dog called?")
    assert len(answers) == 2 and history[-1].role != MessageRole.SYSTEM  # the short-term queue follows


async def test_consolidate_every_counts_pending_transcripts(empty_store: str, tiny_model: str) -> None:
    lora_block = block(empty_store, tiny_model, consolidate_every=2, roles=["user", "assistant"])
    await lora_block.aput(messages()[:2])
    assert len(lora_block.pending) == 1 and lora_block.reports == []
    await lora_block.aput([ChatMessage(role="assistant", content="   ")])  # nothing kept: nothing remembered
    assert len(lora_block.pending) == 1
    await lora_block.aput(messages()[2:3])  # the second transcript: the namespace is consolidated
    assert lora_block.pending == [] and len(lora_block.reports) == 1
    assert lora_block.reports[0].namespace == "chat" and lora_block.reports[0].items_written == 2
    written = shared_memory(empty_store, tiny_model).items("chat")
    assert [d.text.splitlines() for d in written] == [  # type: ignore[union-attr]
        ["User: My dog is called Rex.", "Assistant: Nice name."],
        ["User: I live in Berlin."],
    ]
    recalled = await lora_block.aget(messages())
    assert recalled.startswith("Q: What is my dog called?\nA:")
    assert await lora_block.aconsolidate() == []  # nothing pending


async def test_pending_transcripts_survive_a_new_block_and_memory(
    empty_store: str, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loramem.memory

    first = block(empty_store, tiny_model, consolidate_every=None)
    await first.aput(messages()[:1])
    old_memory = first.memory
    monkeypatch.setattr(loramem.memory, "_SHARED", {})  # as in a new process: a new KnowledgeMemory
    again = block(empty_store, tiny_model, consolidate_every=None)
    assert again.memory is not old_memory
    assert [p.item.text for p in again.pending] == ["My dog is called Rex."]  # type: ignore[union-attr]
    answers = spy_on_ask(again.memory, monkeypatch)
    await again.aget([ChatMessage(role="user", content="What is my dog called?")])
    assert answers[0].details["pending"] == [again.pending[0].id]
    assert await block(str(empty_store) + "-other", tiny_model).aget(messages()) == ""  # holds nothing


def test_sync_memory_api_works_from_other_threads(empty_store: str, tiny_model: str) -> None:
    lora_block = block(empty_store, tiny_model)
    memory = Memory.from_defaults(
        session_id="s2", memory_blocks=[lora_block], token_limit=30, token_flush_size=10
    )
    memory.put_messages(messages())
    assert lora_block.reports
    assert "<lora_memory>" in str(memory.get(input="Where do I live?")[0].content)


def test_bad_fields(empty_store: str) -> None:
    with pytest.raises(ValueError, match="roles"):
        LoRAMemoryBlock(store_path=empty_store, roles=["narrator"])
    with pytest.raises(ValueError, match="namespace"):
        LoRAMemoryBlock(store_path=empty_store, namespace="bad name")
    with pytest.raises(ValueError):
        LoRAMemoryBlock(store_path=empty_store, train={"lr": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="consolidate_every"):
        LoRAMemoryBlock(store_path=empty_store, consolidate_every=0)
