"""LangChain's standard unit suite for ChatLoRAMemory, on the tiny random model (nothing is generated here)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_loramem import ChatLoRAMemory

from ..conftest import empty_store, tiny_model_dir


class TestChatLoRAMemoryUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatLoRAMemory

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model_name": tiny_model_dir(), "store_path": empty_store()}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        env = {"LORAMEM_STORE": "/tmp/loramem-env-store", "LORAMEM_MODEL": "env-model"}
        return env, {}, {"store_path": "/tmp/loramem-env-store", "model_name": "env-model"}

    @property
    def supports_model_override(self) -> bool:
        return False  # modules are tied to the base model they were trained on

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False
