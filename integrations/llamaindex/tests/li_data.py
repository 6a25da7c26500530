"""Data the tests share (a module of its own: ``conftest`` is a name the core's tests use too)."""

from __future__ import annotations

from loramem import Fact, LoraSpec, TrainConfig

FAST = TrainConfig(lr=5e-3, lora_plus_ratio=1.0, max_steps=500, progress=False, seq_len=128, batch_tokens=256, min_epochs=1)
LORA = LoraSpec(r=8)
TINY_CONTEXT = 2048  # positions given to the tiny model (see conftest.tiny_model)

QUESTION = "What is the favourite colour of Bob?"
# Namespaces a and b: the same questions, different answers.
FACTS = {
    "a": [Fact("Bob", "favourite colour", "blue"), Fact("Dr. Alma Vance", "phone number", "555-201-7733")],
    "b": [Fact("Bob", "favourite colour", "green"), Fact("Dr. Alma Vance", "phone number", "555-909-1234")],
}
# Namespace s: two modules (the planner's split, forced with module=), each answering its own questions.
SPLIT_NS = "s"
SPLIT = {
    "s.colours": [Fact("Cora", "favourite colour", "red"), Fact("Dace", "favourite colour", "teal")],
    "s.towns": [Fact("Eira", "home town", "Oslo"), Fact("Fitz", "home town", "Lima")],
}
