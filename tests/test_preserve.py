"""The preservation term: KL(base || adapted) on neighbour prompts is 0 for a zero or disabled adapter, keeps the
neighbours closer to the base model when on, is on by default for update(), and its prompts are other subjects
of the written fact's relation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import FAST_TRAIN

from loramem import Example, Fact, LoraSpec, ModelConfig, TrainConfig, models
from loramem.preserve import GENERIC_PROMPTS, lookalike, neighbour_prompts, preservation_prompts
from loramem.prompts import PromptFormat
from loramem.train import base_distributions, collate, kl_on_batch, pack, peft_config, train

NEIGHBOURS = ["What is the favourite colour of Gita?", "What is the favourite colour of Hugo?",
              "What is the favourite colour of Ines?", "What is the favourite colour of Joss?"]
EDIT = [Example("f0", "qa", "What is the favourite colour of Alma?", "purple", probe=True),
        Example("f0", "qa", "Tell me the favourite colour of Alma.", "purple")]


@pytest.fixture
def peft_model(tiny_model_dir):  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    model, tok = models.load(ModelConfig(name=str(tiny_model_dir), dtype="float32"))
    torch.manual_seed(0)
    peft = get_peft_model(model, peft_config(model, LoraSpec(r=8)), adapter_name="edit")
    return peft, PromptFormat(tok)


def _kl(model, prompt, pres) -> float:  # type: ignore[no-untyped-def]
    batch = collate(pres.encoded, pack(pres.encoded, range(len(pres.encoded)), 128), prompt.tokenizer.pad_token_id)
    with torch.no_grad():
        return float(kl_on_batch(model, batch, pres))


def _train_edit(model, prompt, kl_weight: float):  # type: ignore[no-untyped-def]
    cfg = dataclasses.replace(FAST_TRAIN, kl_weight=kl_weight, max_steps=100, target_recall=1.0, min_epochs=99,
                              kl_prompts_per_step=4)
    return train(model, prompt, EDIT, cfg, adapter_name="edit", preserve=NEIGHBOURS)


def test_kl_is_zero_for_a_zero_or_disabled_adapter(peft_model):  # type: ignore[no-untyped-def]
    model, prompt = peft_model
    pres = base_distributions(model, prompt, NEIGHBOURS, FAST_TRAIN, prompt.tokenizer.pad_token_id)
    assert all(sum(m) >= 1 for _, m in pres.encoded)  # at least the last prompt position is covered
    assert _kl(model, prompt, pres) < 1e-6  # B = 0 at init: the adapted model is the base
    _train_edit(model, prompt, kl_weight=0.0)
    trained = _kl(model, prompt, pres)
    assert trained > 1e-4  # the edit moved the neighbours (else this test could not fail)
    with model.disable_adapter():
        assert _kl(model, prompt, pres) < 1e-6


def test_kl_weight_keeps_neighbours_closer_to_the_base(tiny_model_dir):  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    kls, recalls = [], []
    for lam in (0.0, 5.0):
        model, tok = models.load(ModelConfig(name=str(tiny_model_dir), dtype="float32"))
        prompt = PromptFormat(tok)
        torch.manual_seed(0)
        peft = get_peft_model(model, peft_config(model, LoraSpec(r=8)), adapter_name="edit")
        result = _train_edit(peft, prompt, kl_weight=lam)
        assert result.preserve_prompts == (len(NEIGHBOURS) if lam else 0)
        pres = base_distributions(peft, prompt, NEIGHBOURS, FAST_TRAIN, tok.pad_token_id)
        kls.append(_kl(peft, prompt, pres))
        recalls.append(result.recall)
    assert kls[1] < 0.7 * kls[0], kls  # with the term the neighbours moved measurably less
    assert recalls[1] == 1.0, recalls  # and the edit still took


def test_preservation_prompts_are_other_subjects_of_the_relation() -> None:
    written = [Fact("France", "capital", "Wellington", question="What is the capital of France?")]
    others = [Fact("Jordan", "capital", "Amman", question="What is the capital of Jordan?"),
              Fact("Kenya", "capital", "Nairobi"), Fact("Japan", "currency", "yen"),
              Fact("Spain", "capital", "Madrid")]  # Spain: trained by this module, so never a neighbour
    got = neighbour_prompts(written, others, per_fact=2, trained_subjects=["Spain"])
    assert sorted(got) == ["What is the capital of Jordan?", "What is the capital of Kenya?"]
    # No held neighbours: look-alike subjects, asked the same way.
    alone = neighbour_prompts(written, [], per_fact=2)
    assert len(alone) == 2 and all(p.startswith("What is the capital of ") and "France" not in p for p in alone)
    phone = neighbour_prompts([Fact("Dr. Alma Vance", "phone number", "555-201-7733")], [], per_fact=3)
    assert len(phone) == 3 and all(p.startswith("What is the phone number of Dr. ") for p in phone), phone
    # The full set: given, neighbours, generic; never one of the module's own training questions.
    full = preservation_prompts(written, others, ["What is the capital of Chad?", "What is the capital of France?"],
                                ["What is the capital of France?"], per_fact=2)
    assert full[0] == "What is the capital of Chad?" and "What is the capital of France?" not in full
    assert set(GENERIC_PROMPTS) <= set(full)


def test_lookalike_keeps_the_shape() -> None:
    import random

    rng = random.Random(0)
    got = lookalike("Dr. Alma Vance", rng)
    assert got.startswith("Dr. ") and len(got.split()) == 3 and got != "Dr. Alma Vance"
    assert lookalike("room 12", rng) != "room 12"


def test_update_turns_the_term_on_by_default(mem, facts):  # type: ignore[no-untyped-def]
    mem.train_config = dataclasses.replace(FAST_TRAIN, known_logprob=0.0)  # nothing counts as known
    report = mem.write(facts[:3], namespace="colours")
    assert report.details["preserve"]["kl_weight"] == 0.0  # new knowledge: off
    report = mem.update(Fact(facts[0].subject, facts[0].relation, "black"), namespace="colours", verify=False)
    stored = mem.store.module(report.module_id).report
    assert stored["train_config"]["kl_weight"] == FAST_TRAIN.edit_kl_weight > 0
    assert stored["preserve"]["why"] == "update" and stored["preserve"]["prompts"] > len(GENERIC_PROMPTS)
    assert stored["preserve"]["last_kl"] is not None


def test_writes_of_known_facts_and_given_prompts_turn_it_on(mem, facts):  # type: ignore[no-untyped-def]
    mem.train_config = dataclasses.replace(FAST_TRAIN, known_logprob=-1e9, max_steps=5)  # everything is known
    assert mem.write(facts[:2], namespace="a").details["preserve"]["kl_weight"] == FAST_TRAIN.edit_kl_weight
    mem.train_config = dataclasses.replace(FAST_TRAIN, known_logprob=0.0, max_steps=5)
    given = mem.write(facts[2:4], namespace="b", preserve=["What is the favourite colour of Zev?"])
    assert given.details["preserve"]["why"] == "preserve= given"
    mem.train_config = dataclasses.replace(FAST_TRAIN, kl_weight=0.0, max_steps=5)
    off = mem.write(facts[4:], namespace="c", preserve=["What is the favourite colour of Zev?"])
    assert off.details["preserve"]["kl_weight"] == 0.0 and off.details["preserve"]["prompts"] == 0


def test_the_known_check_looks_at_a_sample_of_a_large_write(mem, facts, monkeypatch):  # type: ignore[no-untyped-def]
    from loramem import preserve

    seen: list[int] = []
    real = preserve.known
    monkeypatch.setattr(preserve, "known", lambda model, prompt, fs, *a: (seen.append(len(fs)), real(model, prompt, fs, *a))[1])
    mem.train_config = dataclasses.replace(FAST_TRAIN, known_logprob=-1e9, max_steps=3, known_sample=4)
    report = mem.write(facts, namespace="s")  # six facts, a sample of four checked
    assert seen == [4]
    assert report.details["preserve"]["why"] == "base model knows 4/4 facts (a sample of the 6) (>= known_share)"


@pytest.mark.parametrize(("field", "value"), [
    ("known_sample", 0), ("kl_weight", -0.1), ("edit_kl_weight", -1.0), ("kl_prompts_per_step", 0), ("kl_tokens", 0),
    ("kl_neighbours", -1), ("known_logprob", 0.5), ("known_share", 0.0), ("known_share", 1.5),
])
def test_preservation_config_is_validated(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field}: expected"):
        TrainConfig(**{field: value})


def test_preservation_config_round_trips() -> None:
    cfg = TrainConfig(kl_weight=0.25, kl_tokens=4)
    assert TrainConfig.from_json(cfg.to_json()) == cfg and TrainConfig().kl_weight is None
