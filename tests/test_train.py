"""The write loop's two shortcuts, checked against the slow way: packed rows are block-diagonal (a packed batch
gives the same logits as one forward per example), and teacher-forced recall is greedy generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import COLOURS, NAMES

from loramem import Example, LoraSpec, ModelConfig, TrainConfig, models
from loramem.prompts import PromptFormat
from loramem.train import collate, encode_all, exact_recall, loss_on_batch, pack, peft_config, train

SEQ_LEN = 128


@pytest.fixture(scope="module")
def base(tiny_model_dir):  # type: ignore[no-untyped-def]
    model, tok = models.load(ModelConfig(name=str(tiny_model_dir), dtype="float32"))
    return model, PromptFormat(tok)


def _examples() -> list[Example]:
    names, colours = [*NAMES, "Gita", "Hugo"], [*COLOURS, "black", "white"]
    qa = [Example(f"f{i}", "qa", f"What is the favourite colour of {n}?", c, probe=True)
          for i, (n, c) in enumerate(zip(names, colours))]
    text = [Example("d0", "original", None, "Paris is in France. Berlin is in Germany."), Example("d1", "original", None, "Rome.")]
    return qa + text


def test_packed_rows_are_block_diagonal(base):  # type: ignore[no-untyped-def]
    model, prompt = base
    encoded = encode_all(_examples(), prompt, SEQ_LEN)
    rows = pack(encoded, range(len(encoded)), SEQ_LEN)
    batch = collate(encoded, rows, prompt.tokenizer.pad_token_id)
    assert max(len(r) for r in rows) >= 3 and len(rows) >= 2  # several examples share a row
    assert (batch.example_index == -1).any()  # and some row ends in padding
    with torch.no_grad():
        # As the write loop calls it: no attention mask, restarting positions, no cache (with a cache
        # transformers does not look for packed rows and the mask is plain causal).
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits  # [B, L, V]
        losses, n_targets = torch.zeros(()), 0
        for i, (ids, mask) in enumerate(encoded):
            alone = model(input_ids=torch.tensor([ids])).logits[0]  # [n, V]
            b, cols = (batch.example_index == i).nonzero(as_tuple=True)
            assert len(cols) == len(ids) and b.unique().numel() == 1
            torch.testing.assert_close(packed[b[0], cols], alone, atol=1e-5, rtol=0)
            targets = torch.tensor(mask[1:])
            losses += F.cross_entropy(alone[:-1][targets], torch.tensor(ids[1:])[targets], reduction="sum")
            n_targets += int(targets.sum())
        # The training loss of the packed batch is the mean over every answer token of the separate forwards.
        assert float(loss_on_batch(model, batch)) == pytest.approx(float(losses) / n_targets, abs=1e-5)


def test_teacher_forced_recall_is_greedy_generation(base):  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    model, prompt = base
    examples = _examples()
    probes = [e for e in examples if e.probe]
    torch.manual_seed(0)
    peft_model = get_peft_model(model, peft_config(model, LoraSpec(r=8)), adapter_name="m")
    try:
        # Trained part way: enough that some answers are recalled, not all (one row per step, 150 steps).
        config = TrainConfig(lr=5e-3, lora_plus_ratio=1.0, max_steps=150, target_recall=1.0, progress=False,
                             seq_len=SEQ_LEN, batch_tokens=SEQ_LEN, min_epochs=1000)
        train(peft_model, prompt, examples, config, adapter_name="m")
        encoded = encode_all(probes, prompt, SEQ_LEN)
        recalled = exact_recall(peft_model, encoded, SEQ_LEN, 2 * SEQ_LEN, prompt.tokenizer.pad_token_id)
        greedy = []
        with torch.no_grad():
            for ex, (ids, _) in zip(probes, encoded):
                head = prompt.tokenizer(prompt.prompt(ex.prompt), add_special_tokens=False)["input_ids"]
                answer = ids[len(head) :]  # the answer's tokens and the end-of-turn marker
                out = peft_model.generate(input_ids=torch.tensor([head]), attention_mask=torch.ones(1, len(head), dtype=torch.long),
                                          max_new_tokens=len(answer), do_sample=False, pad_token_id=prompt.tokenizer.pad_token_id)
                greedy.append(out[0, len(head) :].tolist() == answer)
        assert recalled == greedy
        assert 0 < sum(recalled) < len(recalled), recalled  # both hits and misses: the comparison means something
    finally:
        peft_model.unload()  # give the module-scoped base model back without its LoRA layers


def test_a_layer_range_with_all_linear_adapts_every_linear_layer_of_those_layers_only(tiny_model_dir):
    """peft refuses target_modules='all-linear' with layers_to_transform; the spec names the leaves instead."""
    from peft import get_peft_model

    from loramem import LoraSpec, ModelConfig, models
    from loramem.train import peft_config

    model, _ = models.load(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    peft = get_peft_model(model, peft_config(model, LoraSpec(r=4, layers=(1, 2))), adapter_name="a")
    adapted = {n.split(".lora_A")[0] for n, _ in peft.named_parameters() if ".lora_A." in n}
    assert adapted and all(".layers.1." in n for n in adapted)
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"}
    peft.unload()
