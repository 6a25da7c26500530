"""LoRAMemoryLLM: a LlamaIndex LLM that answers with a loramem module active.

    llm = LoRAMemoryLLM(store_path="./mem", namespace="contacts")
    llm.complete("What is the phone number of Dr. Alma Vance?")
    llm.chat([ChatMessage(role="user", content="...")], namespace="other")   # per-call namespace/module

Completion of a plain question is ``KnowledgeMemory.ask`` (the prompt a module was taught with); chat goes
through the tokenizer's chat template (``KnowledgeMemory.chat``); ``formatted=True`` prompts are completed raw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.generic_utils import messages_to_prompt as generic_messages_to_prompt
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import default_completion_to_prompt

from loramem import interop
from loramem.interop import check_namespace, default_model

if TYPE_CHECKING:
    from loramem import Answer, KnowledgeMemory


def to_conversation(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """LlamaIndex messages as ``{"role", "content"}`` dicts (``loramem.interop.to_conversation``: roles
    normalised, text content only, tool and function results become user turns)."""
    return interop.to_conversation([(m.role, m.content) for m in messages])


def shared_memory(store_path: str | os.PathLike[str], model_name: str | None = None) -> KnowledgeMemory:
    """The process-wide ``KnowledgeMemory`` for this store and model (``loramem.interop.shared_memory`` over
    ``KnowledgeMemory.shared``; ``model_name`` None: ``$LORAMEM_MODEL``, else the embedded SmolLM2).

    Every LLM, retriever and memory block on the same pair uses it, so the model loads once and building
    them stays cheap (the model loads on first use). It may be called from any thread (LlamaIndex's
    ``asyncio_run`` runs coroutines in a fresh thread when a loop is already running): it serialises calls.
    """
    from loramem import KnowledgeMemory

    return interop.shared_memory(KnowledgeMemory.shared, store_path, model_name)


def answer_raw(answer: Answer, namespace: str | None) -> dict[str, Any]:
    """What a response carries besides its text: usage (for token counting), modules, timings."""
    return {
        "usage": dict(getattr(answer, "usage", None) or {}),
        "modules": list(answer.modules),
        "namespace": namespace,
        "reader": answer.reader,
        "timings": dict(answer.timings),
    }


class LoRAMemoryLLM(CustomLLM):
    """A LlamaIndex LLM over a loramem store: generation with the namespace's LoRA module active.

    Construction is cheap (the model loads on first use; objects on the same store and model share it).
    Per call, ``namespace=`` (``None``: the bare base model), ``module=``, ``max_new_tokens=`` and ``stop=``
    override the fields. A namespace that holds no module yet (or is unknown) is answered by the bare model
    (``raw["modules"] == []``) unless ``strict=True``, which raises KeyError: the rule of every integration's
    chat model / LLM (``loramem.interop.resolve_namespace``). ``raw["modules"]`` names the module(s) that
    answered, as routed in a namespace of several, for streams too.
    """

    store_path: str = Field(description="Folder of the loramem store.")
    model_name: str = Field(
        default_factory=default_model,
        description="Base model: a loramem alias ($LORAMEM_MODEL, else the embedded SmolLM2-135M-Instruct) or a "
        "local HF folder.",
    )
    namespace: str | None = Field(
        default="default",
        description="Namespace whose module answers; None answers with the bare base model.",
    )
    module: str | None = Field(
        default=None, description="A module id to use instead of the namespace's module."
    )
    strict: bool = Field(
        default=False,
        description="Raise KeyError when the namespace holds no module yet or is unknown (default: the bare "
        "model answers).",
    )
    max_new_tokens: int = Field(default=256, gt=0, description="Longest generated answer, in tokens.")
    context_window: int | None = Field(
        default=None, gt=0, description="Context window; None reads it from the model (loads the model)."
    )

    _context_window: int | None = PrivateAttr(default=None)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)

    @classmethod
    def class_name(cls) -> str:
        return "LoRAMemoryLLM"

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of this store and model (write into it, inspect it)."""
        return shared_memory(self.store_path, self.model_name)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self._window(),
            num_output=self.max_new_tokens,
            is_chat_model=True,
            model_name=self.model_name,
        )

    def _window(self) -> int:
        if self.context_window is not None:
            return self.context_window
        if self._context_window is None:
            self._context_window = context_window_of(self.memory)
        return self._context_window

    # --- per-call options -----------------------------------------------------------------------------------

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the core's chat/complete/stream_chat, per-call kwargs over fields."""
        max_new = kwargs.get("max_new_tokens") or self.max_new_tokens
        if not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new!r}")
        module = kwargs.get("module", self.module)
        namespace = interop.resolve_namespace(
            self.memory, kwargs.get("namespace", self.namespace), module, strict=self.strict
        )
        return {"namespace": namespace, "module": module, "max_new_tokens": max_new}

    def _requested(self, kwargs: dict[str, Any]) -> str | None:
        return check_namespace(kwargs.get("namespace", self.namespace))

    def _stream_raw(
        self, conversation: list[dict[str, str]], opts: dict[str, Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """What streamed responses carry: the module(s) that answer, as ``chat`` would route the conversation."""
        modules = interop.answering_modules(self.memory, conversation, opts["namespace"], opts["module"])
        return {"modules": modules, "namespace": self._requested(kwargs), "reader": "lora" if modules else "base"}

    def _uses_custom(self, field: str) -> bool:
        """True when the user passed their own ``messages_to_prompt``/``completion_to_prompt``.

        (``model_fields_set`` cannot tell: LLM's validator assigns the defaults after construction.)
        """
        defaults = {
            "messages_to_prompt": generic_messages_to_prompt,
            "completion_to_prompt": default_completion_to_prompt,
        }
        return getattr(self, field) is not defaults[field]

    # --- completion -----------------------------------------------------------------------------------------

    def _complete(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> CompletionResponse:
        opts = self._options(kwargs)
        stop = kwargs.get("stop")
        if not formatted and self._uses_custom("completion_to_prompt"):
            assert self.completion_to_prompt is not None
            prompt, formatted = self.completion_to_prompt(prompt), True

        def call(mem: KnowledgeMemory) -> Answer:
            if formatted:
                return mem.complete([prompt], stop=stop, **opts)[0]
            # A single user turn renders exactly like the prompt modules are taught with (KnowledgeMemory.ask).
            return mem.chat([[{"role": "user", "content": prompt}]], stop=stop, **opts)[0]

        answer = call(self.memory)
        return CompletionResponse(text=answer.text, raw=answer_raw(answer, self._requested(kwargs)))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt, formatted, kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        if formatted or self._uses_custom("completion_to_prompt"):
            # The core streams chat turns only: a raw prompt arrives as one piece.
            response = self._complete(prompt, formatted, kwargs)

            def one() -> CompletionResponseGen:
                yield CompletionResponse(text=response.text, delta=response.text, raw=response.raw)

            return one()
        opts = self._options(kwargs)
        conversation = [{"role": "user", "content": prompt}]
        raw = self._stream_raw(conversation, opts, kwargs)
        # Generation runs on the core's own thread, which holds the memory for the whole generation: the
        # pieces may be read from any thread, and closing the stream early stops generating.
        pieces = self.memory.stream_chat(conversation, stop=kwargs.get("stop"), **opts)

        def gen() -> CompletionResponseGen:
            text, any_piece = "", False
            for piece in pieces:
                text, any_piece = text + piece, True
                yield CompletionResponse(text=text, delta=piece, raw=raw)
            if not any_piece:  # LlamaIndex's callbacks need at least one response, even for an empty answer
                yield CompletionResponse(text="", delta="", raw=raw)

        return gen()

    # --- chat -----------------------------------------------------------------------------------------------

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        if self._uses_custom("messages_to_prompt"):
            assert self.messages_to_prompt is not None  # LLM's validator sets a default
            response = self._complete(self.messages_to_prompt(messages), True, kwargs)
            text, raw = response.text, response.raw
        else:
            opts = self._options(kwargs)
            conversation = to_conversation(messages)
            answer = self.memory.chat([conversation], stop=kwargs.get("stop"), **opts)[0]
            text, raw = answer.text, answer_raw(answer, self._requested(kwargs))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=raw)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        if self._uses_custom("messages_to_prompt"):
            response = self._chat(messages, kwargs)

            def one() -> ChatResponseGen:
                yield ChatResponse(message=response.message, delta=response.message.content, raw=response.raw)

            return one()
        opts = self._options(kwargs)
        conversation = to_conversation(messages)
        raw = self._stream_raw(conversation, opts, kwargs)
        # Generation runs on the core's own thread, which holds the memory for the whole generation: the
        # pieces may be read from any thread, and closing the stream early stops generating.
        pieces = self.memory.stream_chat(conversation, stop=kwargs.get("stop"), **opts)

        def gen() -> ChatResponseGen:
            text, any_piece = "", False
            for piece in pieces:
                text, any_piece = text + piece, True
                message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
                yield ChatResponse(message=message, delta=piece, raw=raw)
            if not any_piece:
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""), delta="", raw=raw)

        return gen()


def context_window_of(mem: KnowledgeMemory) -> int:
    """The model's context window: its position limit, capped by the tokenizer's limit when that is real."""
    config = mem.model.config
    window = int(getattr(config, "max_position_embeddings", 0) or 0)
    tok_max = int(getattr(mem.tokenizer, "model_max_length", 0) or 0)
    if 0 < tok_max < 1_000_000:  # tokenizers without a limit report a huge sentinel value
        window = min(window, tok_max) if window else tok_max
    return window or 2048
