"""The LoRA write loop: pack examples, train one adapter on the frozen base, stop at the target recall.

Why it is shaped this way (CPU throughput is the budget):
  * Examples are packed whole into rows of ``seq_len`` tokens (first-fit decreasing), with position ids that
    restart at every example. With no attention mask, transformers turns the restarting positions into a
    block-diagonal causal mask, so packed examples never see each other and no padding is computed.
  * Loss is on answer tokens only, and the LM head (49k x 576 for SmolLM2, a fifth of the model) runs only on
    the positions that carry loss, instead of on every position as ``labels=`` would.
  * Recall is checked by teacher forcing: an answer is recalled iff the argmax at every answer position is the
    answer's next token, which is exactly "greedy decoding reproduces it". One forward pass, no generation.
  * Edits stay local with a preservation term (``kl_weight`` > 0): loss = CE + lambda x KL(base || adapted) on
    preservation prompts (``loramem.preserve``). The base is frozen, so its distributions are computed once per
    write, with the adapter disabled, before the first step: at the last prompt position and along the base
    model's own greedy continuation (``kl_tokens`` positions, the answer a neighbour question gets). They are
    kept as the top ``KL_TOP_K`` tokens plus one "rest" bucket: the KL of those coarsened distributions is a
    true divergence (0 iff they agree, never above the full KL) at a sliver of the memory of [n, V].
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .config import LoraSpec, TrainConfig
from .devices import autocast, model_device
from .prompts import PromptFormat
from .types import Example

Encoded = tuple[list[int], list[bool]]
KL_TOP_K = 64  # base-model tokens kept per preservation position (the rest is one bucket)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L], restarting at 0 for every packed example
    loss_mask: torch.Tensor  # [B, L] bool: token t is a target (predicted from position t-1)
    example_index: torch.Tensor  # [B, L] which example each token belongs to (-1 for padding)
    real_tokens: int


@dataclass
class TrainResult:
    steps: int
    epochs: float
    tokens_trained: int
    recall: float
    reached_target: bool
    train_seconds: float
    eval_seconds: float
    padding_fraction: float
    history: list[dict[str, float]] = field(default_factory=list)
    preserve_prompts: int = 0  # preservation prompts the KL term used (0: the term was off)
    kl_setup_seconds: float = 0.0  # greedy continuations + base distributions, once per write
    recalled: set[str] = field(default_factory=set)  # items whose every probe was recalled at the last check

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_trained / self.train_seconds if self.train_seconds > 0 else 0.0

    def then(self, later: TrainResult) -> TrainResult:
        """This round followed by ``later`` (a repair round): costs add up, recall is the later round's."""
        real = self.tokens_trained + later.tokens_trained
        padded = sum(r.padding_fraction / max(1e-9, 1 - r.padding_fraction) * r.tokens_trained for r in (self, later))
        shifted = [{**h, "step": h["step"] + self.steps} for h in later.history]
        return TrainResult(
            steps=self.steps + later.steps, epochs=self.epochs + later.epochs, tokens_trained=real,
            recall=later.recall, reached_target=later.reached_target,
            train_seconds=self.train_seconds + later.train_seconds, eval_seconds=self.eval_seconds + later.eval_seconds,
            padding_fraction=padded / max(1, padded + real), history=self.history + shifted,
            preserve_prompts=max(self.preserve_prompts, later.preserve_prompts),
            kl_setup_seconds=self.kl_setup_seconds + later.kl_setup_seconds, recalled=later.recalled,
        )


def encode_all(examples: Sequence[Example], prompt: PromptFormat, seq_len: int) -> list[Encoded]:
    """Tokenise; plain texts longer than a row are cut into row-sized windows, long prompts lose their head."""
    out: list[Encoded] = []
    for ex in examples:
        ids, mask = prompt.encode(ex)
        if len(ids) <= seq_len:
            out.append((ids, mask))
        elif ex.prompt is None:
            for i in range(0, len(ids), seq_len):
                piece_ids, piece_mask = ids[i : i + seq_len], mask[i : i + seq_len]
                if len(piece_ids) > 1:
                    out.append((piece_ids, [False] + piece_mask[1:]))
        else:
            out.append((ids[-seq_len:], mask[-seq_len:]))
    return out


def pack(encoded: Sequence[Encoded], order: Sequence[int], seq_len: int) -> list[list[int]]:
    """First-fit decreasing bin packing of examples (by index) into rows of at most seq_len tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(order, key=lambda j: -len(encoded[j][0])):
        n = len(encoded[i][0])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(seq_len - n)
    return rows


def collate(encoded: Sequence[Encoded], rows: Sequence[list[int]], pad_id: int, device: Any = None) -> Batch:
    """Rows of packed examples as one batch, built on the CPU and moved to ``device`` (the model's)."""
    length = max(sum(len(encoded[i][0]) for i in row) for row in rows)
    B = len(rows)
    input_ids = torch.full((B, length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, length), dtype=torch.long)
    loss_mask = torch.zeros((B, length), dtype=torch.bool)
    example_index = torch.full((B, length), -1, dtype=torch.long)
    real = 0
    for b, row in enumerate(rows):
        t = 0
        for i in row:
            ids, mask = encoded[i]
            n = len(ids)
            input_ids[b, t : t + n] = torch.tensor(ids)
            position_ids[b, t : t + n] = torch.arange(n)
            loss_mask[b, t : t + n] = torch.tensor(mask)
            example_index[b, t : t + n] = i
            t += n
        real += t
        # The tail (if any) is one more "example" of padding; its positions restart so it stays masked off.
        position_ids[b, t:] = torch.arange(length - t)
    if device is not None and device.type != "cpu":
        input_ids, position_ids, loss_mask, example_index = (
            t.to(device, non_blocking=True) for t in (input_ids, position_ids, loss_mask, example_index))
    return Batch(input_ids, position_ids, loss_mask, example_index, real)


def _targets(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states at the positions that predict an answer token, those tokens, and their example ids."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    # attention_mask=None + restarting position_ids -> transformers builds the block-diagonal packed mask.
    hidden = decoder(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).last_hidden_state
    select = batch.loss_mask[:, 1:]  # [B, L-1]: token t+1 is a target, predicted from position t
    h = hidden[:, :-1][select]  # [n, H]
    targets = batch.input_ids[:, 1:][select]  # [n]
    owners = batch.example_index[:, 1:][select]  # [n]
    return h, targets, owners


def _head(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    assert head is not None, "causal LM without output embeddings"
    return head  # type: ignore[no-any-return]


def loss_on_batch(model: Any, batch: Batch) -> torch.Tensor:
    with autocast(model):
        h, targets, _ = _targets(model, batch)
        logits = _head(model)(h).float()  # [n, V]: only answer positions go through the LM head
    return F.cross_entropy(logits, targets)


@dataclass
class Preservation:
    """The base model's next-token distributions on the preservation prompts, cached for a whole write."""

    encoded: list[Encoded]  # prompt + the base's greedy continuation; mask True where the KL applies
    start: torch.Tensor  # [E] first row of each prompt's positions in the tables below
    top_ids: torch.Tensor  # [N, K] the base model's K likeliest next tokens at every kept position
    top_logp: torch.Tensor  # [N, K] their log-probabilities


def _offsets(owners: torch.Tensor, n_examples: int) -> torch.Tensor:
    """Index of each selected position within its example (an example's positions are contiguous)."""
    idx = torch.arange(owners.numel(), device=owners.device)
    first = torch.full((n_examples,), owners.numel(), dtype=torch.long, device=owners.device)
    first = first.scatter_reduce(0, owners, idx, reduce="amin")
    return idx - first[owners]


@torch.no_grad()
def base_distributions(model: Any, prompt: PromptFormat, prompts: Sequence[str], config: TrainConfig,
                       pad_id: int) -> Preservation:
    """Greedy-continue every prompt with the adapter disabled, then cache the base's top-K at each KL position."""
    from .preserve import greedy

    was_training = model.training
    model.eval()
    with model.disable_adapter():  # the target is the frozen base model itself
        encoded: list[Encoded] = []
        for p_ids, cont, _ in greedy(model, prompt, prompts, config.kl_tokens):
            # Positions that predict cont[0..k-1]: the last prompt position and cont[:-1] (cont[-1] only as input).
            ids, mask = (p_ids + cont)[-config.seq_len :], ([False] * len(p_ids) + [True] * len(cont))[-config.seq_len :]
            encoded.append((ids, [False] + mask[1:]))
        device = model_device(model)
        counts = torch.tensor([sum(m[1:]) for _, m in encoded], device=device)
        start = torch.cumsum(counts, 0) - counts
        top_ids = torch.zeros((int(counts.sum()), KL_TOP_K), dtype=torch.long, device=device)
        top_logp = torch.zeros((int(counts.sum()), KL_TOP_K), device=device)
        rows = pack(encoded, range(len(encoded)), config.seq_len)
        per_step = max(1, config.batch_tokens // config.seq_len) * 2  # no backward: bigger batches fit
        for s in range(0, len(rows), per_step):
            batch = collate(encoded, rows[s : s + per_step], pad_id, device)
            with autocast(model):
                h, _, owners = _targets(model, batch)  # [n, H]
                logp = F.log_softmax(_head(model)(h).float(), -1)  # [n, V]
            k = min(KL_TOP_K, logp.shape[-1])
            top = logp.topk(k, -1)
            flat = start[owners] + _offsets(owners, len(encoded))
            top_ids[flat, :k], top_logp[flat, :k] = top.indices, top.values
            top_logp[flat, k:] = -math.inf  # a vocabulary smaller than K: nothing in the unused slots
    model.train(was_training)
    return Preservation(encoded, start, top_ids, top_logp)


def kl_on_batch(model: Any, batch: Batch, pres: Preservation) -> torch.Tensor:
    """Mean over positions of KL(base || adapted), on the top-K + rest coarsening of both distributions."""
    with autocast(model):
        h, _, owners = _targets(model, batch)  # [n, H] at the kept positions of the preservation prompts
        logq = F.log_softmax(_head(model)(h).float(), -1)  # [n, V] adapted
    flat = pres.start[owners] + _offsets(owners, len(pres.encoded))
    ids, logp = pres.top_ids[flat], pres.top_logp[flat]  # [n, K] base
    logq_k = logq.gather(-1, ids)  # [n, K]
    p = logp.exp()
    kl_top = (p * (logp - logq_k)).nan_to_num(0.0).sum(-1)  # unused slots: 0 * (-inf) -> 0
    p_rest = (1 - p.sum(-1)).clamp_min(1e-12)  # [n] base mass outside its top K
    q_rest = (1 - logq_k.exp().masked_fill(logp == -math.inf, 0.0).sum(-1)).clamp_min(1e-12)
    return (kl_top + p_rest * (p_rest.log() - q_rest.log())).mean()


@torch.no_grad()
def exact_recall(model: Any, encoded: Sequence[Encoded], seq_len: int, batch_tokens: int, pad_id: int) -> list[bool]:
    """Per example: does greedy decoding reproduce its whole answer? (teacher-forced argmax check)"""
    if not encoded:
        return []
    was_training = model.training
    model.eval()
    device = model_device(model)
    wrong = torch.zeros(len(encoded), dtype=torch.long, device=device)
    rows = pack(encoded, range(len(encoded)), seq_len)
    per_step = max(1, batch_tokens // seq_len) * 2  # no backward: bigger batches fit
    for s in range(0, len(rows), per_step):
        batch = collate(encoded, rows[s : s + per_step], pad_id, device)
        with autocast(model):
            h, targets, owners = _targets(model, batch)
            preds = _head(model)(h).argmax(-1)
        wrong.index_add_(0, owners, (preds != targets).long())
    model.train(was_training)
    return (wrong == 0).tolist()


def count_knowledge_tokens(examples: Sequence[Example], prompt: PromptFormat) -> int:
    """Tokens of knowledge held: the answer tokens of the probe questions (what must be recalled)."""
    total = 0
    for ex in examples:
        if ex.probe:
            total += len(prompt.tokenizer(ex.completion, add_special_tokens=False)["input_ids"])
    return total


def train(
    model: Any,
    prompt: PromptFormat,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    adapter_name: str,
    desc: str = "write",
    preserve: Sequence[str] = (),
    between: Callable[[], None] | None = None,
) -> TrainResult:
    """Train the active adapter ``adapter_name`` of a PeftModel on ``examples`` until recall or the step cap.

    ``between()`` runs after every optimizer step, with no graph alive: where a write lets reads use the model
    (it must leave the adapter active and the model in train mode again when it returns).

    With ``config.kl_weight`` > 0 and ``preserve`` prompts, each step adds lambda x KL(base || adapted) on
    ``kl_prompts_per_step`` of them (see the module docstring); ``kl_weight`` None counts as 0 here (the
    writer resolves it).
    """
    train_set = [e for e in examples if e.trained]
    probes = [e for e in examples if e.probe]
    if not train_set:
        raise ValueError("nothing to train on: the synthesizer produced no training examples")
    enc = encode_all(train_set, prompt, config.seq_len)
    probe_enc = encode_all(probes, prompt, config.seq_len)
    pad_id = prompt.tokenizer.pad_token_id if prompt.tokenizer.pad_token_id is not None else 0

    device = model_device(model)
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert params and all(f".{adapter_name}." in n or n.endswith(f".{adapter_name}") for n in names), names[:3]
    # LoRA+ (Hayou et al. 2024): B starts at zero and benefits from a larger step than A.
    b_params = [p for n, p in zip(names, params) if "lora_B" in n]
    other = [p for n, p in zip(names, params) if "lora_B" not in n]
    groups = [{"params": other, "lr": config.lr}, {"params": b_params, "lr": config.lr * config.lora_plus_ratio}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay,
                            betas=(0.9, config.adam_beta2))
    def lr_factor(step: int) -> float:
        # Linear warm-up, then linear decay to 10% at the step cap (training usually stops well before).
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        return warm * max(0.1, 1.0 - step / config.max_steps)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    lam = config.kl_weight or 0.0
    t0 = time.perf_counter()
    pres = base_distributions(model, prompt, preserve, config, pad_id) if lam > 0 and preserve else None
    kl_setup_s = time.perf_counter() - t0
    kl_order: list[int] = []  # preservation prompts left in this pass over them (cycled, reshuffled)

    rng = random.Random(config.seed)
    rows_per_step = max(1, config.batch_tokens // config.seq_len)
    epoch_tokens = sum(len(ids) for ids, _ in enc)
    steps = tokens = 0
    train_s = eval_s = 0.0
    padded = 0
    recall, reached = 0.0, False
    history: list[dict[str, float]] = []

    owner = [e.item_id for e in train_set]
    probe_owner = [e.item_id for e in probes]
    recalled: set[str] = set()  # items whose every probe was recalled at the last check

    def check() -> float:
        nonlocal eval_s, recalled
        t0 = time.perf_counter()
        hits = exact_recall(model, probe_enc, config.seq_len, config.batch_tokens, pad_id)
        eval_s += time.perf_counter() - t0
        missed = {i for i, hit in zip(probe_owner, hits) if not hit}
        recalled = set(probe_owner) - missed
        return sum(hits) / len(hits) if hits else 1.0

    def this_pass() -> list[int]:
        """The examples of the next pass: all of them, less (recalled_replay < 1) most of those already recalled."""
        order = list(range(len(enc)))
        if config.recalled_replay < 1.0 and recalled:
            order = [i for i in order if owner[i] not in recalled or rng.random() < config.recalled_replay]
        rng.shuffle(order)
        return order or [rng.randrange(len(enc))]

    from tqdm.auto import tqdm

    bar = tqdm(total=config.max_steps, desc=desc, unit="step", disable=not config.progress, leave=False)
    model.train()
    epoch = 0
    checked_at = -1  # tokens trained at the last per-pass check (-1: none yet)
    try:
        while steps < config.max_steps and not reached:
            rows = pack(enc, this_pass(), config.seq_len)
            rng.shuffle(rows)
            for s in range(0, len(rows), rows_per_step):
                batch = collate(enc, rows[s : s + rows_per_step], pad_id, device)
                t0 = time.perf_counter()
                loss = ce = loss_on_batch(model, batch)
                kl = None
                if pres is not None:
                    if len(kl_order) < config.kl_prompts_per_step:  # next pass; a step never takes one twice
                        fresh = [i for i in range(len(pres.encoded)) if i not in kl_order]
                        rng.shuffle(fresh)
                        kl_order += fresh
                    pick, kl_order = kl_order[: config.kl_prompts_per_step], kl_order[config.kl_prompts_per_step :]
                    kl_batch = collate(pres.encoded, pack(pres.encoded, pick, config.seq_len), pad_id, device)
                    kl = kl_on_batch(model, kl_batch, pres)
                    loss = ce + lam * kl
                loss.backward()
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                train_s += time.perf_counter() - t0
                if between is not None:
                    between()
                steps += 1
                tokens += batch.real_tokens
                padded += batch.input_ids.numel() - batch.real_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", recall=f"{recall:.0%}")
                history.append({"step": steps, "loss": float(ce.item()),
                                **({"kl": float(kl.item())} if kl is not None else {})})
                if config.eval_every and steps % config.eval_every == 0 and epoch + 1 >= config.min_epochs:
                    recall = check()
                    history[-1]["recall"] = recall
                    reached = recall >= config.target_recall
                if reached or steps >= config.max_steps:
                    break
            epoch += 1
            # Once per pass; a schedule's passes shrink as items are recalled, so it checks once per full set's
            # worth of tokens instead (a check costs a forward pass over every probe, more than a short pass).
            due = tokens - checked_at >= epoch_tokens or config.recalled_replay >= 1.0 or checked_at < 0
            if not config.eval_every and not reached and epoch >= config.min_epochs and due:
                checked_at = tokens
                recall = check()
                history[-1]["recall"] = recall
                reached = recall >= config.target_recall
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", recall=f"{recall:.0%}")
        if not history or "recall" not in history[-1]:
            recall = check()
            reached = recall >= config.target_recall
    finally:
        bar.close()
        model.eval()
    return TrainResult(
        steps=steps,
        epochs=tokens / max(1, epoch_tokens),  # passes over the whole set, in tokens (a schedule may skip some)
        tokens_trained=tokens,
        recall=recall,
        reached_target=reached,
        train_seconds=train_s,
        eval_seconds=eval_s,
        padding_fraction=padded / max(1, padded + tokens),
        history=history,
        preserve_prompts=len(pres.encoded) if pres is not None else 0,
        kl_setup_seconds=kl_setup_s,
        recalled=recalled,
    )


# --- adapter construction ------------------------------------------------------------------------------------

_ATTN_HINTS = ("attn", "attention")
_MLP_HINTS = ("mlp", "feed_forward", "ffn")


def target_modules(model: Any, spec: LoraSpec) -> str | list[str]:
    """Leaf names of the linear layers a LoraSpec targets in this architecture."""
    if not isinstance(spec.target, str):
        return list(spec.target)
    if spec.target == "all-linear" and spec.layers is None:
        return "all-linear"  # peft refuses the string with layers_to_transform: name the leaves then
    hints = ("",) if spec.target == "all-linear" else _ATTN_HINTS if spec.target == "attention" else _MLP_HINTS
    leaves: set[str] = set()
    every: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            parent, _, leaf = name.rpartition(".")
            every.add(leaf)
            if any(h in parent.rsplit(".", 1)[-1].lower() for h in hints):
                leaves.add(leaf)
    if not leaves:
        raise ValueError(
            f"target {spec.target!r} matches no linear layer in {type(model).__name__}; linear layers: {sorted(every)}"
        )
    return sorted(leaves)


def peft_config(model: Any, spec: LoraSpec) -> Any:
    from peft import LoraConfig

    kwargs: dict[str, Any] = {}
    if spec.layers is not None:
        kwargs["layers_to_transform"] = list(range(*spec.layers))
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; floats work (rsLoRA/PiSSA)
        lora_dropout=spec.dropout,
        target_modules=target_modules(model, spec),
        use_rslora=spec.use_rslora,
        use_dora=spec.use_dora,
        init_lora_weights="pissa" if spec.init == "pissa" else True,
        task_type="CAUSAL_LM",
        **kwargs,
    )


def pissa_to_lora(trained: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn a PiSSA adapter into a plain LoRA of rank 2r that applies to the *original* base weights.

    PiSSA trains on W_res = W - s*B0@A0. So W_res + s*B@A = W + s*(B@A - B0@A0) = W + s*[B, -B0] @ [A; A0].
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in trained.items():
        if "lora_A" in key:
            out[key] = torch.cat([value, initial[key]], dim=0)
        elif "lora_B" in key:
            out[key] = torch.cat([value, -initial[key]], dim=1)
        else:
            out[key] = value
    return out
