"""LoRAMemoryBlock: long-term memory for ``llama_index.core.memory.Memory`` in loramem's short-term memory,
consolidated into LoRA weights.

    block = LoRAMemoryBlock(store_path="./mem", namespace="chat")
    memory = Memory.from_defaults(session_id="s1", memory_blocks=[block], token_limit=4000)

Messages that ``Memory`` flushes out of its short-term queue arrive in ``_aput``; each flush becomes one
Document (a transcript of the turns of ``roles``) remembered in the namespace (``KnowledgeMemory.remember``:
durable at once, no training, answered at once). Once ``consolidate_every`` transcripts are pending, the
namespace is consolidated into its LoRA module(s) in a worker thread; with None that is left to
``aconsolidate()`` or a background consolidator (``block.memory.start_consolidator(...)``). ``_aget`` asks the
namespace about the latest user message: the core answers with its modules, the most similar pending
transcripts in the question's context.
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
    from loramem import Document, KnowledgeMemory, PendingItem, WriteReport


class LoRAMemoryBlock(BaseMemoryBlock[str]):
    """A memory block whose long-term store is a loramem namespace (one per block): pending transcripts in the
    core's buffer, consolidated into LoRA modules.

    ``train``/``lora`` (``loramem.TrainConfig``/``LoraSpec``) configure consolidation; None uses the defaults.
    Remembering, consolidating and recalling run in a worker thread (``asyncio.to_thread``), so the event loop
    stays free while a module trains.
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
    consolidate_every: int | None = Field(
        default=1,
        ge=1,
        description="Consolidate once this many transcripts (one per flush) are pending in the namespace (1: on "
        "every flush; None: never from the block, call aconsolidate() or start a consolidator).",
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
        default=None, description="Training for the consolidations (None: the memory's default)."
    )
    lora: InstanceOf[LoraSpec] | None = Field(
        default=None, description="LoRA spec of a new module (None: default)."
    )

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
        """The shared ``KnowledgeMemory`` of this store and model. ``train``/``lora``, when given, become its
        defaults (what consolidation uses, a consolidator's too); when several blocks or stores share one
        memory, the last one to touch it wins."""
        mem = shared_memory(self.store_path, self.model_name)
        if self.train is not None:
            mem.train_config = self.train
        if self.lora is not None:
            mem.lora = self.lora
        return mem

    @property
    def pending(self) -> list[PendingItem]:
        """The namespace's transcripts remembered and not consolidated yet, oldest first (``mem.pending``:
        durable, so they outlive this block and the process)."""
        return self.memory.pending(self.namespace)

    @property
    def reports(self) -> list[WriteReport]:
        """The ``WriteReport`` of every consolidation this block ran, oldest first."""
        return list(self._reports)

    # --- put ------------------------------------------------------------------------------------------------

    async def _aput(self, messages: list[ChatMessage]) -> None:
        kept = [
            m for m in messages if str(MessageRole(m.role).value) in self.roles and (m.content or "").strip()
        ]
        if not kept:
            return
        waiting = await asyncio.to_thread(self._remember, self._document(kept))
        if self.consolidate_every is not None and waiting >= self.consolidate_every:
            await self.aconsolidate()

    def _remember(self, document: Document) -> int:
        """Remember one transcript (durable on return, no training); returns the namespace's pending count."""
        mem = self.memory
        mem.remember(document, namespace=self.namespace)
        return len(mem.pending(self.namespace))

    async def aconsolidate(self) -> list[WriteReport]:
        """Consolidate the namespace's pending transcripts into its LoRA module(s) now, whatever their number
        (``mem.consolidate``, in a worker thread); returns the versions written ([] when nothing is pending).
        They stay pending if the write fails."""
        reports = await asyncio.to_thread(self.memory.consolidate, self.namespace)
        self._reports += reports
        return reports

    def _document(self, messages: list[ChatMessage]) -> Document:
        from loramem import Document

        # One role kept (the default: the user's own words): plain sentences, which the synthesizer turns into
        # the questions people ask ("My cat is called Pebble." -> "What is my cat called?"); a "User:" prefix
        # on every line made the module answer "User". Several roles: each line says who spoke.
        speaker = len(self.roles) > 1
        lines = [
            (f"{str(MessageRole(m.role).value).capitalize()}: " if speaker else "") + (m.content or "").strip()
            for m in messages
        ]
        sessions = sorted(
            {str(m.additional_kwargs["session_id"]) for m in messages if "session_id" in m.additional_kwargs}
        )
        document = Document(text="\n".join(lines), title=self.title)
        # A key of its own (the content id): transcripts share a title, which would make each one a new value
        # of the last under the core's same-key rule (remember would replace it, consolidation update it).
        metadata = {"source": "llama_index.memory", "block": self.name, "session_ids": sessions,
                    "key": f"llama_index.memory:{document.id}"}
        return Document(text=document.text, title=document.title, metadata=metadata)

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
        if not mem.ls(self.namespace) and not mem.pending(self.namespace):
            return ""  # the namespace holds nothing yet
        # The core answers with the modules and puts the most similar pending transcripts in the context.
        answer = mem.ask(question, namespace=self.namespace, max_new_tokens=self.max_new_tokens)
        return f"Q: {question}\nA: {answer.text}" if answer.text else ""
