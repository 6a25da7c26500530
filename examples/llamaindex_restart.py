"""A LlamaIndex chat engine whose memory survives a process restart, before and after consolidation into LoRA.

    pip install -e . -e integrations/llamaindex
    HF_HUB_OFFLINE=1 python examples/llamaindex_restart.py STORE tell   # process 1: tell it things, then exit
    HF_HUB_OFFLINE=1 python examples/llamaindex_restart.py STORE ask    # process 2: ask, consolidate, ask again

Process 1 chats with a ``SimpleChatEngine`` whose ``Memory`` has a ``LoRAMemoryBlock`` with
``consolidate_every=None``: turns flushed out of the short-term queue are remembered in loramem's buffer (the
store's manifest, durable), nothing is trained, and the process exits. Process 2 is a new process with a new
chat engine and an empty chat history: the block answers from the buffer at once; then it consolidates the
buffer into a LoRA module, and a third chat engine (history empty, buffer empty) answers from the module alone.
Each step prints one JSON line last (the slow test reads it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

TOLD = ["My cat is called Pebble.", "My sister lives in Vellmoor.", "I drive a green tractor."]
ASKED = {"What is my cat called?": "Pebble", "Where does my sister live?": "Vellmoor"}


def _engine(store: str, **block: Any) -> tuple[Any, Any]:
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.core.memory import Memory
    from llama_index.llms.loramem import LoRAMemoryLLM
    from llama_index.memory.loramem import LoRAMemoryBlock

    from loramem import TrainConfig

    train = TrainConfig(lr=3e-3, lora_plus_ratio=1.0, max_steps=80, seq_len=128, batch_tokens=256, min_epochs=4,
                        progress=False)
    llm = LoRAMemoryLLM(store_path=store, namespace=None, max_new_tokens=24)  # the block brings the memory
    mem_block = LoRAMemoryBlock(store_path=store, namespace="me", train=train, max_new_tokens=24, **block)
    memory = Memory.from_defaults(session_id="s", memory_blocks=[mem_block], token_limit=40, token_flush_size=10)
    return SimpleChatEngine.from_defaults(llm=llm, memory=memory), mem_block


def _recollections(block: Any) -> dict[str, str]:
    """What the block puts in the chat engine's context for each question (its recollection)."""
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    return {q: asyncio.run(block.aget(messages=[ChatMessage(role=MessageRole.USER, content=q)])) for q in ASKED}


def tell(store: str) -> dict[str, Any]:
    chat, block = _engine(store, consolidate_every=None)
    for turn in [*TOLD, "Thanks, that is all for now."]:
        print(f"user: {turn}\nassistant: {chat.chat(turn).response}")
    pending = len(block.pending)
    print(f"remembered, not trained: {pending} transcript(s) in the buffer; this process exits now")
    return {"step": "tell", "pending": pending, "modules": len(block.memory.ls("me"))}


def ask(store: str) -> dict[str, Any]:
    chat, block = _engine(store, consolidate_every=None)  # a new process: nothing in this chat's history
    before = _recollections(block)
    replies_before = {q: chat.chat(q).response for q in ASKED}
    pending_before = len(block.pending)
    reports = block.memory.consolidate("me")
    chat, block = _engine(store, consolidate_every=None)  # history empty again; the buffer now is too
    after = _recollections(block)
    replies_after = {q: chat.chat(q).response for q in ASKED}
    for q, gold in ASKED.items():
        print(f"{q}\n  before consolidation: {before[q]!r} -> {replies_before[q]!r}\n"
              f"  after:                {after[q]!r} -> {replies_after[q]!r}   (expected {gold})")
    hit = lambda texts: sum(gold.lower() in texts[q].lower() for q, gold in ASKED.items()) / len(ASKED)  # noqa: E731
    return {"step": "ask", "pending_before": pending_before, "pending_after": len(block.pending),
            "versions": [r.version for r in reports], "recall_before": hit(before), "recall_after": hit(after),
            "reply_before": hit(replies_before), "reply_after": hit(replies_after)}


if __name__ == "__main__":
    folder, step = sys.argv[1], sys.argv[2]
    result = tell(folder) if step == "tell" else ask(folder)
    print(json.dumps(result))
