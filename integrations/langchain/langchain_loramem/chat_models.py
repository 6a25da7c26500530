"""``ChatLoRAMemory``: a LangChain chat model that answers with a loramem module (LoRA memory) active.

It converts LangChain messages to a chat conversation and calls ``KnowledgeMemory.chat`` /
``stream_chat``; everything else (which adapter, batching, the chat template) is the core's business.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from loramem import interop
from loramem.interop import check_namespace, default_model, default_store
from pydantic import Field, field_validator, model_validator

if TYPE_CHECKING:
    from loramem import KnowledgeMemory


def shared_memory(store_path: str | os.PathLike[str] | None = None, model_name: str | None = None) -> KnowledgeMemory:
    """The process-wide ``KnowledgeMemory`` for this store and model (``loramem.interop.shared_memory`` over
    ``KnowledgeMemory.shared``; None: ``$LORAMEM_STORE`` / ``$LORAMEM_MODEL``).

    The chat model, retriever and store all use it, so the weights load once however many objects point at
    the same store, and building those objects stays cheap (the model loads on first use). The memory is
    safe to call from any thread: it serialises calls itself.
    """
    from loramem import KnowledgeMemory

    return interop.shared_memory(KnowledgeMemory.shared, store_path, model_name)


def accept_model_alias(data: Any) -> Any:
    """Constructor kwargs: accept ``model=`` as well as ``model_name=`` (LangChain's usual spelling)."""
    if isinstance(data, dict) and "model" in data and "model_name" not in data:
        data = {**data, "model_name": data["model"]}
        del data["model"]
    return data


_TYPES = ("system", "human", "ai", "tool", "function", "chat")


def to_conversation(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> ``[{"role": "system"|"user"|"assistant", "content": str}]``
    (``loramem.interop.to_conversation``: text content only; tool results become user turns; an
    ``AIMessage``'s tool calls are dropped, the model cannot call tools)."""
    pairs: list[tuple[str, Any]] = []
    for message in messages:
        if not isinstance(message, BaseMessage) or message.type not in _TYPES:
            raise TypeError(
                f"messages: expected system/human/AI/tool/chat messages, got {type(message).__name__}"
            )
        pairs.append((message.role if isinstance(message, ChatMessage) else message.type, message.content))
    return interop.to_conversation(pairs)


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    for s in stop or ():
        if s and s in text:
            text = text[: text.index(s)]
    return text


class ChatLoRAMemory(BaseChatModel):
    """Chat with a base causal LM whose LoRA memory module for ``namespace`` is active.

    Reads are greedy: ``temperature`` is accepted for compatibility with LangChain's standard parameters, but
    generation never samples (a memory should give the same answer every time).

    Pick the memory per call with ``.bind(namespace=...)``, ``invoke(..., namespace=...)``, or
    ``configurable_fields(namespace=ConfigurableField(id="namespace"))``. ``namespace=None`` answers with the
    bare base model; ``module=`` picks one module id explicitly. A namespace that holds no module yet (or is
    unknown) is answered by the bare model (``response_metadata["modules"]`` is then empty) unless
    ``strict=True``, which raises KeyError (``loramem.interop.resolve_namespace``, the rule of every
    integration's chat model / LLM). ``response_metadata["modules"]`` names the module(s) that answered, as
    routed in a namespace of several, for streams too.

    Construction is cheap: the model loads on first use and is shared, per (``store_path``, ``model_name``),
    with every other chat model, retriever and store of this package in the process.

    Example:
        .. code-block:: python

            from langchain_loramem import ChatLoRAMemory

            llm = ChatLoRAMemory(store_path="./mem", namespace="contacts")
            llm.invoke("What is the phone number of Dr. Alma Vance?").content
    """

    store_path: str = Field(default_factory=default_store)
    """Folder of the loramem store ($LORAMEM_STORE, else ./loramem-store)."""
    model_name: str = Field(default_factory=default_model)
    """Base model: an alias (``smollm2-135m``, the embedded default), a local HF folder or a hub id."""
    namespace: str | None = "default"
    """Memory namespace whose module answers; None means the bare base model."""
    module: str | None = None
    """A module id to use instead of the namespace's module."""
    strict: bool = False
    """Raise KeyError if ``namespace`` holds no module yet or is unknown (instead of answering with the bare
    model)."""
    temperature: float | None = None
    """Accepted and ignored: reads are greedy."""
    max_tokens: int | None = None
    """Most tokens to generate; None uses the memory's ``ReadConfig.max_new_tokens``."""
    stop: list[str] | None = None
    """Stop sequences (cut from the answer)."""
    streaming: bool = False
    """Stream by default in ``invoke`` (BaseChatModel reads this)."""

    @model_validator(mode="before")
    @classmethod
    def _model_alias(cls, data: Any) -> Any:
        return accept_model_alias(data)

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)

    @field_validator("max_tokens")
    @classmethod
    def _valid_max_tokens(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_tokens: expected None or an int >= 1, got {value!r}")
        return value

    # --- LangChain plumbing ----------------------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "loramem-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "store_path": self.store_path,
            "namespace": self.namespace,
            "module": self.module,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="loramem",
            ls_model_name=kwargs.get("model", self.model_name),
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = list(stop)
        return params

    # --- calls -----------------------------------------------------------------------------------------------

    def _memory(self) -> KnowledgeMemory:
        return shared_memory(self.store_path, self.model_name)

    def _call_args(self, mem: KnowledgeMemory, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for ``KnowledgeMemory.chat``/``stream_chat``, per-call kwargs over fields."""
        namespace = kwargs.get("namespace", self.namespace)
        module = kwargs.get("module", self.module)
        # A namespace with nothing written yet: the memory is empty, the bare model answers (unless strict).
        namespace = interop.resolve_namespace(mem, namespace, module, strict=self.strict)
        return {
            "namespace": namespace,
            "module": module,
            "max_new_tokens": kwargs.get("max_tokens", self.max_tokens),
            "stop": list(stop or self.stop or []) or None,
        }

    def _metadata(self, kwargs: dict[str, Any], modules: list[str], reader: str) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "namespace": kwargs.get("namespace", self.namespace),
            "modules": modules,
            "reader": reader,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        mem = self._memory()
        conversation = to_conversation(messages)
        args = self._call_args(mem, stop, kwargs)
        answer = mem.chat([conversation], **args)[0]
        usage = getattr(answer, "usage", None) or {}
        message = AIMessage(
            content=_cut_at_stop(answer.text, args["stop"]),
            usage_metadata=_usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0)),
            response_metadata=self._metadata(kwargs, list(answer.modules), answer.reader),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        mem = self._memory()
        conversation = to_conversation(messages)
        args = self._call_args(mem, stop, kwargs)
        # The stream yields text only: which module(s) answer, as chat() would route this conversation.
        modules = interop.answering_modules(mem, conversation, args["namespace"], args["module"])
        pieces: list[str] = []
        # The core generates on its own thread and holds the memory's lock for the whole generation, so this
        # stream may be read from any thread(s) (LangChain's astream does); closing it early stops generation.
        for piece in mem.stream_chat(conversation, **args):
            if not piece:
                continue
            pieces.append(piece)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        # Usage is counted once, on the last chunk (the core's stream yields text only).
        input_tokens, output_tokens = _count_tokens(mem, conversation, "".join(pieces))
        reader = "lora" if modules else "base"
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(input_tokens, output_tokens),
                response_metadata=self._metadata(kwargs, modules, reader),
                chunk_position="last",
            )
        )


def _usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        total_tokens=int(input_tokens + output_tokens),
    )


def _count_tokens(mem: KnowledgeMemory, conversation: list[dict[str, str]], text: str) -> tuple[int, int]:
    """(prompt tokens, generated tokens) of a streamed reply, re-tokenised (the stream yields text only)."""
    tok = mem.tokenizer
    if getattr(tok, "chat_template", None):
        if conversation[0]["role"] != "system":  # the core renders chats with its own short system turn
            conversation = [{"role": "system", "content": mem.model_config.system_prompt}, *conversation]
        prompt = str(tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True))
    else:
        prompt = "\n".join(m["content"] for m in conversation)
    n_in = len(tok(prompt, add_special_tokens=False)["input_ids"])
    n_out = len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
    return n_in, n_out
