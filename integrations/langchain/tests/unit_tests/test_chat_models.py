"""ChatLoRAMemory on the tiny model: the module of the chosen namespace really answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import ConfigurableField

from langchain_loramem import ChatLoRAMemory
from langchain_loramem.chat_models import shared_memory, to_conversation

from ..conftest import SPLIT, SPLIT_NS

QUESTION = "What is the favourite colour of Alma Vance?"


@pytest.fixture
def llm(tiny_model: str, store_with_facts: str) -> ChatLoRAMemory:
    return ChatLoRAMemory(
        model_name=tiny_model, store_path=store_with_facts, namespace="people_a", max_tokens=16
    )


def test_invoke_answers_from_the_namespace_module(llm: ChatLoRAMemory) -> None:
    out = llm.invoke(QUESTION)
    assert out.content == "blue"
    assert out.response_metadata["model_name"] == llm.model_name
    assert out.response_metadata["namespace"] == "people_a"
    assert out.response_metadata["modules"] and out.response_metadata["reader"] == "lora"
    usage = out.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_bind_and_configurable_fields_switch_the_answer(llm: ChatLoRAMemory) -> None:
    assert llm.bind(namespace="people_b").invoke(QUESTION).content == "green"
    assert llm.invoke(QUESTION, namespace="people_b").content == "green"
    configurable = llm.configurable_fields(namespace=ConfigurableField(id="namespace"))
    assert configurable.invoke(QUESTION).content == "blue"
    out = configurable.invoke(QUESTION, config={"configurable": {"namespace": "people_b"}})
    assert out.content == "green"
    assert llm.invoke("What is the home city of Bob Stone?", namespace="people_b").content == "Rome"


def test_module_kwarg_and_bare_model(llm: ChatLoRAMemory) -> None:
    module_b = shared_memory(llm.store_path, llm.model_name).ls("people_b")[0].module_id
    out = llm.invoke(QUESTION, module=module_b)
    assert out.content == "green" and out.response_metadata["modules"] == [module_b]
    bare = llm.invoke(QUESTION, namespace=None)
    assert bare.response_metadata["modules"] == [] and bare.response_metadata["reader"] == "base"
    assert bare.content not in ("blue", "green")


def test_empty_namespace_falls_back_to_bare_model_unless_strict(llm: ChatLoRAMemory) -> None:
    out = llm.invoke(QUESTION, namespace="nobody_wrote_here")
    assert out.response_metadata["modules"] == []
    with pytest.raises(KeyError, match="nobody_wrote_here"):
        llm.model_copy(update={"strict": True}).invoke(QUESTION, namespace="nobody_wrote_here")
    with pytest.raises(ValueError, match="namespace"):
        ChatLoRAMemory(store_path=llm.store_path, namespace="not valid!")


def test_stream_matches_invoke(llm: ChatLoRAMemory) -> None:
    chunks = list(llm.stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].chunk_position == "last"
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == "blue"
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] > 0
    assert full.response_metadata["model_name"] == llm.model_name
    assert "".join(str(c.content) for c in llm.stream(QUESTION, namespace="people_b")) == "green"


def test_stream_reports_the_routed_module(llm: ChatLoRAMemory) -> None:
    split = llm.model_copy(update={"namespace": SPLIT_NS})
    for module, facts in SPLIT.items():
        question = facts[1].canonical_question
        chunks = list(split.stream(question))
        assert "".join(str(c.content) for c in chunks) == facts[1].object
        assert chunks[-1].response_metadata["modules"] == [module]  # the module that answered, not the first
        assert split.invoke(question).response_metadata["modules"] == [module]  # the same as invoke says


async def test_async_and_batch(llm: ChatLoRAMemory) -> None:
    out = await llm.ainvoke(QUESTION)
    assert out.content == "blue"
    pieces = [str(c.content) async for c in llm.astream(QUESTION, namespace="people_b")]
    assert "".join(pieces) == "green"
    batch = await llm.abatch([QUESTION, "What is the pet of Cleo Ward?"])
    assert [m.content for m in batch] == ["blue", "a cat"]


def test_stop_sequences(llm: ChatLoRAMemory) -> None:
    assert llm.invoke(QUESTION, stop=["ue"]).content == "bl"
    assert llm.model_copy(update={"stop": ["lue"]}).invoke(QUESTION).content == "b"


def test_ls_params(llm: ChatLoRAMemory) -> None:
    params = llm._get_ls_params(stop=["x"])
    assert params["ls_provider"] == "loramem" and params["ls_model_name"] == llm.model_name
    assert params["ls_max_tokens"] == 16 and params["ls_stop"] == ["x"]
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"


def test_to_conversation() -> None:
    conv = to_conversation(
        [
            SystemMessage("be brief"),
            HumanMessage([{"type": "text", "text": "hi "}, {"type": "image_url", "image_url": "x"}, "there"]),
            AIMessage("hello"),
            ToolMessage("42", tool_call_id="t1"),
            ChatMessage(role="critic", content="hm"),
            ChatMessage(role="assistant", content="ok"),
        ]
    )
    assert conv == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},  # text parts only
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Tool result: 42"},
        {"role": "user", "content": "hm"},  # an unknown role is a user turn
        {"role": "assistant", "content": "ok"},
    ]
    with pytest.raises(ValueError, match="at least one"):
        to_conversation([])


def test_shared_memory_key_and_env_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loramem import interop

    seen: list[tuple[str, str]] = []

    def opener(path: str, model: str) -> tuple[str, str]:
        seen.append((path, model))
        return path, model

    monkeypatch.setenv("LORAMEM_STORE", str(tmp_path / "env-store"))
    monkeypatch.setenv("LORAMEM_MODEL", "env-model")
    assert interop.shared_memory(opener) == (str(tmp_path / "env-store"), "env-model")
    link = tmp_path / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert interop.shared_memory(opener, "~/s", str(link))[1] == str(tmp_path.resolve())  # real path of a folder
    assert seen[-1][0] == str(Path("~/s").expanduser())
    with pytest.raises(ValueError, match="model_name"):
        interop.shared_memory(opener, "x", " ")
