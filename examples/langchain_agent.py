"""A LangChain agent whose long-term memory lives in LoRA weights.

    pip install -e . -e integrations/langchain langchain
    HF_HUB_OFFLINE=1 python examples/langchain_agent.py

The agent (``create_agent``, langchain 1.x) uses ``ChatLoRAMemory`` as its model and ``LoRAMemoryStore`` as its
store. Over a few turns in one thread the user tells it facts, which the store remembers in loramem's
short-term buffer; the agent answers them in that thread before any training (from the buffer); the store
consolidates them into a LoRA module; in a *new* thread (no chat history, the buffer empty) the agent answers
from the module alone.

Honest notes:
* SmolLM2-135M cannot call tools, so the agent has ``tools=[]`` (create_agent then just binds model settings,
  it never calls ``bind_tools``). The facts reach the store through a rule-based middleware that parses user
  turns of the form "Remember that <subject>'s <relation> is <object>." -- not through the model.
* A second middleware points the model at the user's memory namespace (``model_settings`` -> ``.bind``).
* Each put is remembered in loramem's short-term buffer at once (``store.pending()``; ``store.get`` and
  ``KnowledgeMemory.ask`` see it before any training). Consolidation is explicit here (``store.consolidate()``);
  ``consolidate_every=N`` would do it once N values of a namespace are pending, ``store.start_consolidator()``
  in the background.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, ModelResponse, before_model, wrap_model_call
from langchain_core.messages import HumanMessage
from langchain_loramem import ChatLoRAMemory, LoRAMemoryStore
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from loramem import TrainConfig

FACTS_TOLD = [
    "Remember that Alma Vance's favourite colour is teal.",
    "Remember that Bruno Kessler's home town is Lyon.",
    "Remember that Cora Lindqvist's pet is a parrot named Pip.",
    "Remember that Dario Moss's phone number is 555-201-7733.",
]
QUESTIONS = {
    "What is the favourite colour of Alma Vance?": "teal",
    "What is the home town of Bruno Kessler?": "Lyon",
    "What is the pet of Cora Lindqvist?": "parrot",
    "What is the phone number of Dario Moss?": "555-201-7733",
}
REMEMBER = re.compile(
    r"^remember(?: that)?:?\s+(?P<subject>.+?)'s (?P<relation>.+?) is (?P<object>.+?)\.?$", re.I
)


@dataclass
class UserContext:
    user_id: str


def user_namespace(user_id: str) -> tuple[str, ...]:
    return ("users", user_id, "facts")


@before_model
def remember_facts(state: Any, runtime: Runtime[UserContext]) -> dict[str, Any] | None:
    """Put "Remember that X's R is O." turns into the store as facts (rule-based: the model can't call tools)."""
    last = state["messages"][-1]
    match = REMEMBER.match(last.text.strip()) if isinstance(last, HumanMessage) else None
    if match and runtime.store is not None:
        key = re.sub(r"\W+", "-", f"{match['subject']}-{match['relation']}").strip("-").lower()
        runtime.store.put(user_namespace(runtime.context.user_id), key, match.groupdict())
    return None


@wrap_model_call
def use_user_memory(
    request: ModelRequest[UserContext], handler: Callable[[ModelRequest[UserContext]], ModelResponse]
) -> ModelResponse:
    """Answer with the LoRA module that holds this user's facts."""
    namespace = LoRAMemoryStore.memory_namespace(user_namespace(request.runtime.context.user_id))
    return handler(request.override(model_settings={**request.model_settings, "namespace": namespace}))


def main(store_path: str | None = None) -> dict[str, Any]:
    store_path = store_path or tempfile.mkdtemp(prefix="loramem-agent-")
    store = LoRAMemoryStore(
        store_path, "smollm2-135m", train=TrainConfig(lr=3e-3, lora_plus_ratio=1.0, max_steps=200, progress=False)
    )
    model = ChatLoRAMemory(store_path=store_path, model_name="smollm2-135m", max_tokens=32)
    agent = create_agent(
        model,
        tools=[],
        middleware=[remember_facts, use_user_memory],
        context_schema=UserContext,
        store=store,
        checkpointer=InMemorySaver(),
    )
    alice = UserContext(user_id="alice")

    print("-- thread 1: telling the agent facts")
    for turn in FACTS_TOLD:
        out = agent.invoke(
            {"messages": [HumanMessage(turn)]}, {"configurable": {"thread_id": "t1"}}, context=alice
        )
        print(f"user: {turn}\nagent: {out['messages'][-1].text}")
    print(f"pending in the store (not trained yet): {len(store.pending())} facts")
    # Same thread, before any training: the answers come from the buffer (and the thread's history).
    before: dict[str, str] = {}
    for question, expected in QUESTIONS.items():
        out = agent.invoke(
            {"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": "t1"}}, context=alice
        )
        before[question] = out["messages"][-1].text
        print(f"user: {question}\nagent: {before[question]}   [{'ok' if expected in before[question] else 'MISS'}]")
    before_recall = sum(expected in before[q] for q, expected in QUESTIONS.items()) / len(QUESTIONS)
    print(f"recalled in the same thread before consolidation: {before_recall:.0%}")

    for report in store.consolidate():
        print("consolidated:", report.summary())
    pending_after = len(store.pending())
    print(f"pending after consolidation: {pending_after}")

    print("-- thread 2: new conversation, no history; the answers come from the LoRA module")
    answers: dict[str, str] = {}
    for question, expected in QUESTIONS.items():
        out = agent.invoke(
            {"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": "t2"}}, context=alice
        )
        answers[question] = out["messages"][-1].text
        # Each turn in thread 2 sees the earlier ones too; the module was trained on single questions.
        print(
            f"user: {question}\nagent: {answers[question]}   [{'ok' if expected in answers[question] else 'MISS'}]"
        )

    fresh: dict[str, str] = {}
    for i, question in enumerate(QUESTIONS):  # one thread per question: exactly the trained prompt shape
        out = agent.invoke(
            {"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": f"q{i}"}}, context=alice
        )
        fresh[question] = out["messages"][-1].text
    recalled = sum(expected in fresh[q] for q, expected in QUESTIONS.items()) / len(QUESTIONS)
    print(f"recalled in fresh threads: {recalled:.0%}")
    store.close()
    return {"answers": answers, "fresh": fresh, "recall": recalled, "before": before, "before_recall": before_recall,
            "pending_after": pending_after, "store_path": store_path}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
