"""Write-path throughput: loramem's LoRA write loop against a plain transformers.Trainer + peft recipe.

Same base model (the embedded SmolLM2-135M), same 100 PhoneBook QA examples, same LoRA (r16, all linear
layers), same number of optimizer steps and examples per step, one process, side by side. The baseline is the
usual recipe: the tokenizer's default chat template (with its default system prompt), padded batches, loss
on every token. Prints examples/s and tokens/s of each and their ratio, plus the fp32 matmul rate measured
in the same run. Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/write_throughput.py
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--examples-per-step", type=int, default=24)
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from loramem import KnowledgeMemory, SynthConfig
    from loramem.demo import measure_matmul
    from loramem.phonebook import phonebook
    from loramem.synth import synthesize
    from loramem.train import collate, encode_all, loss_on_batch, pack, peft_config

    mem = KnowledgeMemory.open("/tmp/loramem-bench-unused")
    tok, base = mem.tokenizer, mem.model
    examples = synthesize(phonebook(100), SynthConfig(qa_paraphrases=1))
    n = args.steps * args.examples_per_step
    rate = measure_matmul()

    # --- loramem: packed rows, answer-only loss and head, short prompt -------------------------------------
    from loramem import LoraSpec

    enc = encode_all(examples, mem.prompt_format, 256)
    torch.manual_seed(0)
    model = get_peft_model(base, peft_config(base, LoraSpec(r=16)), adapter_name="bench")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    order = [i % len(enc) for i in range(n)]
    steps = [order[s : s + args.examples_per_step] for s in range(0, n, args.examples_per_step)]
    ours_tokens = 0
    t0 = time.perf_counter()
    for idx in steps:
        sub = [enc[i] for i in idx]
        batch = collate(sub, pack(sub, range(len(sub)), 256), tok.pad_token_id)
        loss_on_batch(model, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ours_tokens += batch.real_tokens
    ours_s = time.perf_counter() - t0
    base = model.unload()

    # --- baseline: Trainer, default chat template, padded batches, loss on every token ----------------------
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.completion}], tokenize=False
        )
        for e in examples
    ]
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    data = [{"input_ids": rows[i % len(rows)]} for i in range(n)]

    def collate_padded(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), tok.pad_token_id)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            ids[r, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[r, : len(f["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    torch.manual_seed(0)
    lora = LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    targs = TrainingArguments(
        output_dir="/tmp/loramem-bench-trainer", per_device_train_batch_size=args.examples_per_step,
        max_steps=args.steps, learning_rate=1e-3, logging_steps=10_000, save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collate_padded)
    t0 = time.perf_counter()
    trainer.train()
    base_s = time.perf_counter() - t0
    base_tokens = sum(len(d["input_ids"]) for d in data)

    nparams = sum(p.numel() for p in base.parameters()) if hasattr(base, "parameters") else 0
    print(f"fp32 matmul rate (same run): {rate:.0f} GFLOP/s; {n} examples in {args.steps} steps each")
    print("| write loop | seconds | examples/s | real tokens/s | share of matmul rate (4 x params FLOPs/token) |")
    print("|---|---|---|---|---|")
    for name, sec, toks in (("loramem", ours_s, ours_tokens), ("Trainer + peft baseline", base_s, base_tokens)):
        share = 4 * nparams * toks / sec / 1e9 / rate
        print(f"| {name} | {sec:.1f} | {n / sec:.2f} | {toks / sec:.0f} | {share:.0%} |")
    print(f"loramem / baseline, examples per second: {base_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
