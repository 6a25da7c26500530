"""The ``write_throughput`` experiment: loramem's LoRA write loop against a plain transformers.Trainer + peft recipe.

Same base model, same PhoneBook QA examples (``task.size`` entries, synthesized with ``synth``), same LoRA
(``lora``), same number of optimizer steps (``options.steps``) and examples per step
(``options.examples_per_step``), same learning rate (``train.lr``, AdamW), one process, one after the other.

- loramem: packed rows of ``train.seq_len`` tokens, loss and LM head on the answer positions only, its short
  prompt (``KnowledgeMemory.prompt_format``);
- the baseline, the usual recipe: the tokenizer's default chat template (with its default system prompt),
  padded batches, loss on every token, ``Trainer`` with ``use_cpu``.

``results.json``: one point with ``loops`` (wall seconds of the whole loop as the user waits for it: batching
and the Trainer's own setup included; examples/s, real tokens/s, the share of the run's start matmul rate at
4 x params FLOPs per token, median step seconds) and the ratio of examples per second;
``samples.jsonl``: one row per loop x step (seconds, examples, real and padded tokens).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import TYPE_CHECKING, Any

from ..config import WriteThroughputOptions

if TYPE_CHECKING:
    from ..runner import Runner

LOOPS = ("loramem", "trainer+peft")


def run(runner: Runner, results: dict[str, Any]) -> None:
    from loramem.phonebook import phonebook
    from loramem.synth import synthesize

    exp, mem = runner.experiment, runner.mem
    assert mem is not None and isinstance(exp.options, WriteThroughputOptions)
    opts = exp.options
    examples = synthesize(phonebook(exp.task.size, seed=exp.task.seed), exp.synth)
    n = opts.steps * opts.examples_per_step
    order = [i % len(examples) for i in range(n)]  # the same examples, in the same order, for both loops
    nparams = int(getattr(mem, "base_params", 0) or sum(p.numel() for p in mem.model.parameters()))
    rate = float(results["load"]["start"]["matmul_gflops"])
    point: dict[str, Any] = {
        "index": 0, "label": f"{n} examples in {opts.steps} steps", "overrides": {},
        "task": {"name": "phonebook", "size": exp.task.size, "seed": exp.task.seed, "examples": len(examples)},
        "examples_trained": n, "base_params": nparams, "matmul_gflops": rate, "loops": {},
    }
    results["points"].append(point)
    for name, loop in (("loramem", _loramem), ("trainer+peft", _trainer)):
        steps, seconds = loop(mem, examples, order, opts, exp)
        runner.output.append({"point": 0, "reader": name, "step": i, **s} for i, s in enumerate(steps))
        tokens = sum(s["real_tokens"] for s in steps)
        point["loops"][name] = {
            "seconds": round(seconds, 4), "steps": len(steps), "examples": n,
            "examples_per_second": round(n / seconds, 3), "real_tokens": tokens,
            "padded_tokens": sum(s["padded_tokens"] for s in steps),
            "real_tokens_per_second": round(tokens / seconds, 1),
            "share_of_matmul_rate": round(4 * nparams * tokens / seconds / 1e9 / rate, 4),
            "median_step_seconds": round(statistics.median(s["seconds"] for s in steps), 4),
        }
        runner.say(f"  {exp.name}: {name}: {seconds:.1f}s, {n / seconds:.2f} examples/s, {tokens / seconds:.0f} "
                   f"real tokens/s")
        runner.save(results)
    ours, base = point["loops"]["loramem"], point["loops"]["trainer+peft"]
    point["ratio_examples_per_second"] = round(ours["examples_per_second"] / base["examples_per_second"], 3)
    runner.say(f"  {exp.name}: loramem / baseline, examples per second: {point['ratio_examples_per_second']:.2f}x")
    runner.save(results)


def _loramem(mem: Any, examples: list[Any], order: list[int], opts: WriteThroughputOptions,
             exp: Any) -> tuple[list[dict[str, Any]], float]:
    """Steps of loramem's loop; returns one row per step and the loop's wall seconds (batching included)."""
    import torch
    from peft import get_peft_model

    from loramem.train import collate, encode_all, loss_on_batch, pack, peft_config

    seq_len = exp.train.seq_len
    enc = encode_all(examples, mem.prompt_format, seq_len)
    torch.manual_seed(exp.train.seed)
    model = get_peft_model(mem.model, peft_config(mem.model, exp.lora), adapter_name="bench")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=exp.train.lr)
    rows = []
    t_loop = time.perf_counter()
    try:
        for s in range(opts.steps):
            sub = [enc[i] for i in order[s * opts.examples_per_step:(s + 1) * opts.examples_per_step]]
            t0 = time.perf_counter()
            batch = collate(sub, pack(sub, range(len(sub)), seq_len), mem.tokenizer.pad_token_id)
            loss_on_batch(model, batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rows.append({"seconds": round(time.perf_counter() - t0, 4), "examples": len(sub),
                         "real_tokens": int(batch.real_tokens), "padded_tokens": int(batch.input_ids.numel())})
        wall = time.perf_counter() - t_loop
    finally:
        model.unload()  # the base model as it was, for the baseline
    return rows, wall


def _trainer(mem: Any, examples: list[Any], order: list[int], opts: WriteThroughputOptions,
             exp: Any) -> tuple[list[dict[str, Any]], float]:
    """Steps of ``Trainer.train()``; one row per step (the step alone) and the wall seconds of ``train()``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    tok = mem.tokenizer
    texts = [tok.apply_chat_template([{"role": "user", "content": e.prompt},
                                      {"role": "assistant", "content": e.completion}], tokenize=False)
             for e in examples]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    data = [{"input_ids": ids[i]} for i in order]
    sizes: list[tuple[int, int]] = []  # (real, padded) tokens of each batch, in the order the Trainer asks

    def collate_padded(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        batch = torch.full((len(features), width), tok.pad_token_id)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            batch[r, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[r, : len(f["input_ids"])] = 1
        sizes.append((int(mask.sum()), batch.numel()))
        return {"input_ids": batch, "attention_mask": mask, "labels": batch.masked_fill(mask == 0, -100)}

    class StepTimes(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t0)

    torch.manual_seed(exp.train.seed)
    spec = exp.lora
    lora = LoraConfig(r=spec.r, lora_alpha=spec.alpha or spec.r, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(mem.model, lora)
    times = StepTimes()
    with tempfile.TemporaryDirectory(prefix="loramem-bench-trainer-") as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=opts.examples_per_step, max_steps=opts.steps,
            learning_rate=exp.train.lr, logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collate_padded,
                          callbacks=[times])
        try:
            t0 = time.perf_counter()
            trainer.train()
            wall = time.perf_counter() - t0
        finally:
            model.unload()
    if len(times.seconds) != opts.steps or len(sizes) < opts.steps:
        raise RuntimeError(f"the Trainer ran {len(times.seconds)} steps over {len(sizes)} batches, "
                           f"expected {opts.steps}")
    # Batches are shuffled by the Trainer's sampler; their token counts arrive in step order.
    return [{"seconds": round(s, 4), "examples": opts.examples_per_step, "real_tokens": real, "padded_tokens": padded}
            for s, (real, padded) in zip(times.seconds, sizes)], wall
