"""LoRAMemoryBlock inside llama_index.core.memory.Memory: flushed messages are written into LoRA, then recalled."""

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


async def test_flush_writes_into_lora_and_get_recalls(empty_store: str, tiny_model: str) -> None:
    lora_block = block(empty_store, tiny_model)
    memory = Memory.from_defaults(
        session_id="s1",
        memory_blocks=[lora_block],
        token_limit=30,
        token_flush_size=10,
        async_database_uri="sqlite+aiosqlite:///:memory:",
    )
    # Nothing consolidated yet: the block contributes nothing.
    assert lora_block.reports == []
    await memory.aput(ChatMessage(role="user", content="Hello"))
    assert not any("<lora_memory>" in (m.content or "") for m in await memory.aget(input="Hi"))

    await memory.aput_messages(messages())  # over the token limit: the oldest turns flush into the block
    assert lora_block.reports, "no flushed message reached the block"
    report = lora_block.reports[0]
    assert report.namespace == "chat" and report.items_written == 1

    items = shared_memory(empty_store, tiny_model).items("chat")
    assert len(items) == 1 and isinstance(items[0], Document)
    doc = items[0]
    assert "User: My dog is called Rex." in doc.text.splitlines()
    assert "Nice name" not in doc.text  # only the user's turns are kept by default
    assert doc.metadata["session_ids"] == ["s1"]

    history = await memory.aget(input="What is my dog called?")
    system = history[0]
    assert system.role == MessageRole.SYSTEM
    text = system.content or ""
    assert "<lora_memory>" in text and "Q: What is my dog called?\nA: " in text
    assert history[-1].role != MessageRole.SYSTEM  # the short-term queue follows the memory


async def test_consolidate_every_batches_writes(empty_store: str, tiny_model: str) -> None:
    lora_block = block(empty_store, tiny_model, consolidate_every=3, roles=["user", "assistant"])
    await lora_block.aput(messages()[:2])
    assert len(lora_block.pending) == 2 and lora_block.reports == []
    assert await lora_block.aget(messages()) == ""  # nothing written yet
    await lora_block.aput(messages()[2:3])
    assert lora_block.pending == [] and len(lora_block.reports) == 1
    written = shared_memory(empty_store, tiny_model).items("chat")
    assert isinstance(written[0], Document)
    assert written[0].text.splitlines() == [
        "User: My dog is called Rex.",
        "Assistant: Nice name.",
        "User: I live in Berlin.",
    ]
    recalled = await lora_block.aget(messages())
    assert recalled.startswith("Q: What is my dog called?\nA:")
    assert await lora_block.aconsolidate() is None  # nothing pending


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
