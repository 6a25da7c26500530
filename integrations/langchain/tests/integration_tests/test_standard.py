"""LangChain's standard integration suites.

The retriever suite runs on the tiny model (fast). The chat model suite generates real replies ("Hello",
haikus), which the tiny random model cannot be relied on to produce, so it runs on the embedded
SmolLM2-135M-Instruct behind the ``slow`` marker.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import ChatModelIntegrationTests, RetrieversIntegrationTests

from langchain_loramem import ChatLoRAMemory, LoRAMemoryRetriever

from ..conftest import tiny_model_dir, trained_store


class TestLoRAMemoryRetrieverIntegration(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return LoRAMemoryRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "model_name": tiny_model_dir(),
            "store_path": trained_store(),
            "namespace": "people_a",
            "k": 2,
        }

    @property
    def retriever_query_example(self) -> str:
        return "What is the favourite colour of Alma Vance?"


_EMBEDDED_STORE = tempfile.mkdtemp(prefix="langchain-loramem-embedded-")


@pytest.mark.slow
class TestChatLoRAMemoryIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatLoRAMemory

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # An empty store: the namespace holds no module yet, so the bare embedded model answers.
        return {"model_name": "smollm2-135m", "store_path": _EMBEDDED_STORE, "max_tokens": 48}

    @property
    def supports_model_override(self) -> bool:
        return False

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False
