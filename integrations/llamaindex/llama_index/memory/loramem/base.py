"""LoRAMemoryBlock: long-term memory for ``llama_index.core.memory.Memory``, consolidated into LoRA weights.

    block = LoRAMemoryBlock(store_path="./mem", namespace="chat")
    memory = Memory.from_defaults(session_id="s1", memory_blocks=[block], token_limit=4000)

Messages that ``Memory`` flushes out of its short-term queue arrive in ``_aput``; they become one Document (a
transcript) and are written into the namespace's module, at once or after ``consolidate_every`` messages.
``_aget`` asks the module about the latest user message and returns what it recalls.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.memory.memory import BaseMemoryBlock
from pydantic import InstanceOf

from llama_index.llms.loramem.base import shared_memory
from loramem import LoraSpec, TrainConfig
from loramem.interop import check_namespace, default_model

if TYPE_CHECKING:
    from loramem import Document, KnowledgeMemory, WriteReport


class LoRAMemoryBlock(BaseMemoryBlock[str]):
    """A memory block whose long-term store is a loramem module (one namespace per block).

    ``train``/``lora`` (``loramem.TrainConfig``/``LoraSpec``) configure the writes; None uses the defaults.
    Writes and recalls run in a worker thread (``asyncio.to_thread``), so the event loop stays free while a
    module trains.
    """

    name: str = Field(default="lora_memory", description="The name of the memory block.")
    description: str | None = Field(
        default="What the LoRA long-term memory recalls about the latest message.",
        description="A description of the memory block.",
    )
    store_path: str = Field(description="Folder of the loramem store.")
    model_name: str = Field(
        default_factory=default_model,
        description="Base model: a loramem alias ($LORAMEM_MODEL, else the embedded SmolLM2) or a local HF folder.",
    )
    namespace: str = Field(default="chat", description="Namespace the conversation is written into.")
    consolidate_every: int = Field(
        default=1, ge=1, description="Write once this many flushed messages are pending (1: on every flush)."
    )
    roles: list[str] = Field(
        default_factory=lambda: ["user"],
        description="Roles whose messages are kept (default: what the user said, not the model's replies).",
    )
    title: str = Field(default="the conversation", description="Title of the written transcripts.")
    max_new_tokens: int | None = Field(
        default=None, gt=0, description="Longest recall; None: the store default."
    )
    train: InstanceOf[TrainConfig] | None = Field(
        default=None, description="Training for the writes (None: default)."
    )
    lora: InstanceOf[LoraSpec] | None = Field(
        default=None, description="LoRA spec of a new module (None: default)."
    )

    _pending: list[ChatMessage] = PrivateAttr(default_factory=list)
    _reports: list[Any] = PrivateAttr(default_factory=list)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        return check_namespace(value)  # type: ignore[return-value]

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: list[str]) -> list[str]:
        known = {r.value for r in MessageRole}
        bad = [r for r in value if r not in known]
        if not value or bad:
            raise ValueError(f"roles: expected a non-empty list of {sorted(known)}, got {value!r}")
        return value

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of this store and model."""
        return shared_memory(self.store_path, self.model_name)

    @property
    def pending(self) -> list[ChatMessage]:
        """Flushed messages not yet written (fewer than ``consolidate_every``)."""
        return list(self._pending)

    @property
    def reports(self) -> list[WriteReport]:
        """The ``WriteReport`` of every write this block made, oldest first."""
        return list(self._reports)

    # --- put ------------------------------------------------------------------------------------------------

    async def _aput(self, messages: list[ChatMessage]) -> None:
        kept = [
            m for m in messages if str(MessageRole(m.role).value) in self.roles and (m.content or "").strip()
        ]
        self._pending.extend(kept)
        if len(self._pending) >= self.consolidate_every:
            await self.aconsolidate()

    async def aconsolidate(self) -> WriteReport | None:
        """Write the pending messages now, whatever their number; None when nothing is pending."""
        batch, self._pending = self._pending, []
        if not batch:
            return None
        document = self._document(batch)
        try:
            report = await asyncio.to_thread(
                self.memory.write, document, namespace=self.namespace, train=self.train, lora=self.lora
            )
        except BaseException:
            self._pending = batch + self._pending  # not written: keep them for the next attempt
            raise
        self._reports.append(report)
        return report

    def _document(self, messages: list[ChatMessage]) -> Document:
        from loramem import Document

        lines = [
            f"{str(MessageRole(m.role).value).capitalize()}: {(m.content or '').strip()}" for m in messages
        ]
        sessions = sorted(
            {str(m.additional_kwargs["session_id"]) for m in messages if "session_id" in m.additional_kwargs}
        )
        return Document(
            text="\n".join(lines),
            title=self.title,
            metadata={"source": "llama_index.memory", "block": self.name, "session_ids": sessions},
        )

    # --- get ------------------------------------------------------------------------------------------------

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        question = next(
            (
                m.content
                for m in reversed(messages or [])
                if m.role == MessageRole.USER and (m.content or "").strip()
            ),
            None,
        )
        if question is None:
            return ""
        return await asyncio.to_thread(self._recall, self.memory, question)

    def _recall(self, mem: KnowledgeMemory, question: str) -> str:
        if not mem.ls(self.namespace):
            return ""  # nothing consolidated yet
        answer = mem.ask(question, namespace=self.namespace, max_new_tokens=self.max_new_tokens)
        return f"Q: {question}\nA: {answer.text}" if answer.text else ""
