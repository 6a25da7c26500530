"""LoRAMemoryLLM on the tiny model: metadata, complete/chat (plain and streamed, sync and async), per-call
namespace and module, usage reporting."""

from __future__ import annotations

from pathlib import Path

import pytest
from li_data import QUESTION, SPLIT, SPLIT_NS, TINY_CONTEXT
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from llama_index.llms.loramem import LoRAMemoryLLM
from llama_index.llms.loramem.base import shared_memory

USER = [ChatMessage(role=MessageRole.USER, content=QUESTION)]


@pytest.fixture
def llm(store: str, tiny_model: str) -> LoRAMemoryLLM:
    return LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="a", max_new_tokens=16)


def test_construction_is_cheap(tmp_path: Path) -> None:
    store = tmp_path / "store"
    llm = LoRAMemoryLLM(store_path=str(store), model_name="smollm2-135m")
    assert llm.class_name() == "LoRAMemoryLLM"
    assert not store.exists()  # nothing opened
    assert not llm.memory.loaded  # opening the store does not load the model


def test_invalid_namespace_is_rejected(store: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        LoRAMemoryLLM(store_path=store, namespace="no spaces allowed")


def test_metadata(llm: LoRAMemoryLLM, tiny_model: str) -> None:
    meta = llm.metadata
    assert meta.is_chat_model is True
    assert meta.context_window == TINY_CONTEXT  # the tiny model's max_position_embeddings
    assert meta.num_output == 16
    assert meta.model_name == tiny_model
    assert LoRAMemoryLLM(store_path="x", context_window=1024).metadata.context_window == 1024


def test_objects_share_one_memory(llm: LoRAMemoryLLM, store: str, tiny_model: str) -> None:
    other = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="b")
    assert other.memory is llm.memory is shared_memory(store, tiny_model)


def test_complete_recalls_the_namespace(llm: LoRAMemoryLLM) -> None:
    response = llm.complete(QUESTION)
    assert response.text == "blue"
    assert response.raw["modules"] and response.raw["namespace"] == "a"
    assert response.raw["usage"]["input_tokens"] > 0 and response.raw["usage"]["output_tokens"] > 0


def test_namespace_switching_changes_answers(llm: LoRAMemoryLLM) -> None:
    assert llm.complete(QUESTION, namespace="a").text == "blue"
    assert llm.complete(QUESTION, namespace="b").text == "green"
    assert llm.chat(USER, namespace="b").message.content == "green"
    base = llm.complete(QUESTION, namespace=None, max_new_tokens=4)
    assert base.raw["modules"] == [] and base.raw["reader"] == "base"


def test_module_kwarg_picks_a_module(llm: LoRAMemoryLLM) -> None:
    module_b = llm.memory.ls("b")[0].module_id
    assert llm.complete(QUESTION, module=module_b).text == "green"
    assert llm.model_copy(update={"namespace": "b"}).complete(QUESTION).text == "green"


def test_chat_goes_through_the_chat_template(llm: LoRAMemoryLLM) -> None:
    response = llm.chat(USER)
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content == "blue"
    # A longer conversation renders (system + earlier turns) and still answers.
    history = [
        ChatMessage(role=MessageRole.SYSTEM, content="Answer briefly."),
        ChatMessage(role=MessageRole.USER, content="Hi"),
        ChatMessage(role=MessageRole.ASSISTANT, content="Hello"),
        *USER,
    ]
    assert isinstance(llm.chat(history).message.content, str)


def test_stream_complete_and_stream_chat(llm: LoRAMemoryLLM) -> None:
    chunks = list(llm.stream_complete(QUESTION))
    assert chunks and chunks[-1].text == "blue"
    assert "".join(c.delta or "" for c in chunks) == "blue"
    assert chunks[-1].raw["modules"] == [llm.memory.ls("a")[0].module_id] and chunks[-1].raw["namespace"] == "a"
    chat_chunks = list(llm.stream_chat(USER, namespace="b"))
    assert chat_chunks[-1].message.content == "green"
    assert "".join(c.delta or "" for c in chat_chunks) == "green"


def test_stream_abandoned_early_leaves_the_memory_usable(llm: LoRAMemoryLLM) -> None:
    gen = llm.stream_complete("Tell me a story", namespace=None, max_new_tokens=12)
    next(gen, None)
    gen.close()
    assert llm.complete(QUESTION).text == "blue"


def test_formatted_prompt_is_completed_raw(llm: LoRAMemoryLLM) -> None:
    prompt = llm.memory.tokenizer.apply_chat_template(
        [{"role": "system", "content": ""}, {"role": "user", "content": QUESTION}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert llm.complete(prompt, formatted=True).text == "blue"
    assert [c.text for c in llm.stream_complete(prompt, formatted=True)] == ["blue"]


def test_custom_messages_to_prompt_is_honoured(store: str, tiny_model: str) -> None:
    seen: list[int] = []

    def to_prompt(messages: object) -> str:
        seen.append(1)
        return (
            "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n"
            + QUESTION
            + "<|im_end|>\n<|im_start|>assistant\n"
        )

    llm = LoRAMemoryLLM(store_path=store, model_name=tiny_model, namespace="a", messages_to_prompt=to_prompt)
    assert llm.chat(USER).message.content == "blue"
    assert seen


def test_stop_strings_cut_the_answer(llm: LoRAMemoryLLM) -> None:
    assert llm.complete(QUESTION, stop=["ue"]).text == "bl"


def test_empty_namespace_falls_back_to_the_bare_model_unless_strict(llm: LoRAMemoryLLM) -> None:
    bare = llm.complete(QUESTION, namespace=None, max_new_tokens=4)
    out = llm.complete(QUESTION, namespace="nowhere", max_new_tokens=4)
    assert out.text == bare.text and out.raw["modules"] == [] and out.raw["reader"] == "base"
    assert out.raw["namespace"] == "nowhere"
    assert llm.chat(USER, namespace="nowhere").raw["modules"] == []
    assert list(llm.stream_chat(USER, namespace="nowhere"))[-1].raw["modules"] == []
    strict = llm.model_copy(update={"strict": True})
    with pytest.raises(KeyError, match="nowhere"):
        strict.complete(QUESTION, namespace="nowhere")
    with pytest.raises(KeyError, match="nowhere"):
        strict.stream_chat(USER, namespace="nowhere")


def test_streams_report_the_routed_module(llm: LoRAMemoryLLM) -> None:
    for module, facts in SPLIT.items():
        question = facts[1].canonical_question
        chunks = list(llm.stream_complete(question, namespace=SPLIT_NS))
        assert chunks[-1].text == facts[1].object and chunks[-1].raw["modules"] == [module]
        chat = list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content=question)], namespace=SPLIT_NS))
        assert chat[-1].raw["modules"] == [module]
        assert llm.complete(question, namespace=SPLIT_NS).raw["modules"] == [module]


async def test_async_defaults(llm: LoRAMemoryLLM) -> None:
    assert (await llm.acomplete(QUESTION)).text == "blue"
    assert (await llm.achat(USER, namespace="b")).message.content == "green"
    pieces = [c async for c in await llm.astream_chat(USER)]
    assert pieces[-1].message.content == "blue"
    assert (await llm.apredict(_prompt(QUESTION))) == "blue"


def _prompt(text: str) -> object:
    from llama_index.core.prompts import PromptTemplate

    return PromptTemplate(text)
