"""Configuration: one dataclass per concept, validated on construction, round-tripping to JSON.

Every field's help lives once, in the field's ``metadata["help"]``; the CLI and the docs read it from there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T", bound="_Config")

Format = Literal["qa", "rewrite", "original", "summary"]
FORMATS: tuple[str, ...] = ("qa", "rewrite", "original", "summary")
TargetSet = Literal["all-linear", "attention", "mlp"]
TARGET_SETS: tuple[str, ...] = ("all-linear", "attention", "mlp")


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


def _expect(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {got!r}")


class _Config:
    """JSON round-trip shared by every config dataclass."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; valid fields are {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


@dataclass
class ModelConfig(_Config):
    name: str = _help(
        "Base causal LM: an alias (see loramem.models.ALIASES), a local Hugging Face folder, or a hub id.",
        default="smollm2-135m",
    )
    device: str = _help(
        "Where the base model runs: 'auto' (the first CUDA device, else MPS, else the CPU), 'cpu', 'cuda', "
        "'cuda:N' or 'mps'. Ignored when device_map is given.",
        default="auto",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _help(
        "Weights dtype. 'auto': bfloat16 on a CUDA device that supports it, float32 elsewhere (the fast path on "
        "CPUs). Modules read across dtypes: the base fingerprint does not depend on it.",
        default="auto",
    )
    device_map: str | None = _help(
        "Passed to from_pretrained for models larger than one device ('auto', 'balanced', ...); needs accelerate.",
        default=None,
    )
    quantize: Literal["4bit", "8bit"] | None = _help(
        "Load the base in 4 or 8 bits with bitsandbytes (the 'quantized' extra, CUDA only) for QLoRA-style writes. "
        "Modules written on a quantized base are tied to it: its fingerprint differs from the full-precision one.",
        default=None,
    )
    trust_remote_code: bool = _help("Run code shipped with a hub model. Off: never trust it by default.", default=False)
    system_prompt: str = _help(
        "System turn used for every training example and question (empty keeps the prompt short).", default=""
    )

    def __post_init__(self) -> None:
        _expect(isinstance(self.name, str) and bool(self.name.strip()), "name", "a non-empty string", self.name)
        _expect(self.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", "auto|float32|bfloat16|float16",
                self.dtype)
        _expect(isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda", "mps")
                                                   or self.device.startswith("cuda:")),
                "device", "auto|cpu|cuda|cuda:N|mps", self.device)
        _expect(self.quantize in (None, "4bit", "8bit"), "quantize", "None|4bit|8bit", self.quantize)


@dataclass
class LoraSpec(_Config):
    r: int = _help("LoRA rank. Low ranks store the most knowledge per parameter.", default=16)
    alpha: float | None = _help("LoRA alpha; None means alpha = r (the paper's setting).", default=None)
    dropout: float = _help("LoRA dropout. 0 for memorisation: we want the facts, not robustness.", default=0.0)
    target: str | tuple[str, ...] = _help(
        "Which linear layers get adapters: 'all-linear', 'attention', 'mlp', or explicit module names.",
        default="all-linear",
    )
    layers: tuple[int, int] | None = _help(
        "Half-open layer range [start, stop) to adapt; None adapts every layer.", default=None
    )
    use_rslora: bool = _help("Rank-stabilised scaling alpha/sqrt(r).", default=False)
    use_dora: bool = _help("Weight-decomposed LoRA (DoRA).", default=False)
    init: Literal["default", "pissa"] = _help(
        "Adapter initialisation. 'pissa' trains from the principal components and is saved as a plain "
        "LoRA of rank 2r on the unchanged base.",
        default="default",
    )

    def __post_init__(self) -> None:
        _expect(isinstance(self.r, int) and self.r >= 1, "r", "an int >= 1", self.r)
        _expect(self.alpha is None or self.alpha > 0, "alpha", "None or > 0", self.alpha)
        _expect(0.0 <= self.dropout < 1.0, "dropout", "a float in [0, 1)", self.dropout)
        if isinstance(self.target, str):
            _expect(self.target in TARGET_SETS, "target", f"one of {TARGET_SETS} or a list of names", self.target)
        else:
            _expect(
                len(self.target) > 0 and all(isinstance(t, str) for t in self.target),
                "target",
                "a non-empty list of module names",
                self.target,
            )
        if self.layers is not None:
            layers = tuple(self.layers)
            _expect(
                len(layers) == 2 and 0 <= layers[0] < layers[1],
                "layers",
                "(start, stop) with 0 <= start < stop",
                self.layers,
            )
            self.layers = (int(layers[0]), int(layers[1]))
        _expect(self.init in ("default", "pissa"), "init", "'default' or 'pissa'", self.init)
        _expect(not (self.init == "pissa" and self.use_dora), "init", "not 'pissa' together with DoRA", self.init)

    @property
    def lora_alpha(self) -> float:
        return float(self.r if self.alpha is None else self.alpha)


@dataclass
class SynthConfig(_Config):
    formats: tuple[str, ...] = _help(
        "Training formats to synthesise: any of qa, rewrite, original, summary (summary needs an LLM synthesizer).",
        default=("qa",),
    )
    qa_paraphrases: int = _help("Question paraphrases per fact (the canonical question is always one).", default=3)
    max_cloze_per_sentence: int = _help("Rule-based cloze questions per document sentence.", default=2)
    wh_questions: int = _help(
        "Documents: wh-question phrasings trained per sentence, in the words users ask ('What is Maya allergic "
        "to?', and the reverse 'Who is allergic to peanuts?'), besides the cloze questions; rule synthesis "
        "writes them for the sentence shapes it knows. A sentence with two or more phrasings also gets one held "
        "out, never trained (format heldout), to measure recall in unseen words. The LLM synthesizer asks for "
        "this many phrasings plus one per fact. 3: every answer of a typical sentence once (main question, "
        "reverse or second answer, main again) for 3 more short examples. 0: cloze questions only.",
        default=3,
    )
    wh_probe: bool = _help(
        "Documents: probe a sentence's recall (what decides when training stops) with its first trained "
        "wh-question instead of its first cloze question. Off: the cloze probes, as before wh-questions existed.",
        default=False,
    )
    seed: int = _help("Seed for paraphrase choice and for the contexts (distractors, order, look-alikes).", default=0)
    context_mix: bool = _help(
        "Context-mixed training: besides the bare questions, train some with a context before them, rendered as "
        "ask(context=...) and the RAG/ICL readers render it: the gold item among distractors (answer from the "
        "context or memory) and distractors only (answer from memory). Without it, a module read with retrieved "
        "text copies an answer out of the text (PhoneBook 64: LoRA 0.97, LoRA+RAG 0.06). Off: bare questions only.",
        default=True,
    )
    context_questions: int = _help(
        "Questions per fact that get context variants: the canonical question, then paraphrases. 2 (the "
        "canonical one and one paraphrase) teaches the behaviour on two wordings without paying for every "
        "paraphrase. Documents: the recall cloze of every sentence is eligible.",
        default=2,
    )
    gold_share: float = _help(
        "Share of the eligible questions trained with a context of the gold item plus distractors, shuffled. "
        "1.0: the layout hybrid reads mostly see (retrieval finds the gold line most of the time).",
        default=1.0,
    )
    distractor_share: float = _help(
        "Share of the eligible questions trained with distractors only, answered from memory (retrieval "
        "misses). 0.5: one per fact at the default 2 questions, half the cost of one per question.",
        default=0.5,
    )
    min_distractors: int = _help("Fewest distractor items (or chunks) in one context.", default=2)
    max_distractors: int = _help(
        "Most distractor items (or chunks) in one context. 2-3 distractors (3-4 lines with the gold one) "
        "bracket the RAG reader's default k=3 while keeping context examples short.",
        default=3,
    )
    context_chunk_words: int = _help(
        "Documents: the chunk size in words (overlap: an eighth, as RAGIndex.build) of the gold and distractor "
        "chunks; match the RAG index the module is read with. A context example longer than TrainConfig.seq_len "
        "loses its head, so raise seq_len with the chunk size.",
        default=64,
    )

    def __post_init__(self) -> None:
        self.formats = tuple(self.formats)
        _expect(len(self.formats) > 0, "formats", "at least one format", self.formats)
        for f in self.formats:
            _expect(f in FORMATS, "formats", f"each one of {FORMATS}", f)
        _expect(self.qa_paraphrases >= 1, "qa_paraphrases", "an int >= 1", self.qa_paraphrases)
        _expect(self.max_cloze_per_sentence >= 0, "max_cloze_per_sentence", "an int >= 0", self.max_cloze_per_sentence)
        _expect(isinstance(self.wh_questions, int) and not isinstance(self.wh_questions, bool)
                and self.wh_questions >= 0, "wh_questions", "an int >= 0", self.wh_questions)
        _expect(isinstance(self.wh_probe, bool), "wh_probe", "a bool", self.wh_probe)
        _expect(isinstance(self.context_mix, bool), "context_mix", "a bool", self.context_mix)
        _expect(self.context_questions >= 1, "context_questions", "an int >= 1", self.context_questions)
        for name in ("gold_share", "distractor_share"):
            value = getattr(self, name)
            _expect(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, name, "a float in [0, 1]", value)
        _expect(self.min_distractors >= 1, "min_distractors", "an int >= 1", self.min_distractors)
        _expect(self.max_distractors >= self.min_distractors, "max_distractors",
                f">= min_distractors ({self.min_distractors})", self.max_distractors)
        _expect(self.context_chunk_words >= 8, "context_chunk_words", "an int >= 8", self.context_chunk_words)


@dataclass
class TrainConfig(_Config):
    lr: float = _help("Peak learning rate (AdamW; linear warm-up, then linear decay to 10% at max_steps).", default=2e-3)
    warmup_steps: int = _help("Linear warm-up steps.", default=5)
    weight_decay: float = _help("AdamW weight decay.", default=0.0)
    lora_plus_ratio: float = _help(
        "LoRA+: learning rate of the B matrices = lr x this ratio (1 = plain LoRA). Speeds up memorisation.",
        default=8.0,
    )
    max_grad_norm: float = _help("Gradient clipping (0 = off): keeps the high learning rates of memorisation stable.", default=1.0)
    adam_beta2: float = _help("AdamW beta2 (second-moment decay). Lower adapts faster to the sharp loss drops "
                              "of memorisation.", default=0.999)
    max_steps: int = _help("Step cap: training stops here even below the target recall.", default=800)
    target_recall: float = _help(
        "Stop once this share of the written items is recalled exactly (greedy).", default=0.95
    )
    eval_every: int = _help("Optimizer steps between recall checks (0 = once per epoch).", default=0)
    min_epochs: int = _help("Epochs to train before the first recall check.", default=2)
    seq_len: int = _help("Length of one packed row, in tokens.", default=256)
    batch_tokens: int = _help("Tokens per optimizer step (rows of seq_len packed with whole examples).", default=512)
    recalled_replay: float = _help(
        "Data schedule: after each recall check, the items already recalled are trained on with this probability "
        "per example in the next pass, the others always (1 = every item every pass). Saves the tokens spent "
        "on what is already known.", default=1.0)
    replay_items: int | None = _help(
        "Incremental writes: held items a new version replays beside the new ones, sampled at random (None: "
        "every held item, as a rebuild does). Every held item is checked once at the end and the ones that "
        "slipped are trained again (repair_rounds). Measured (benchmarks/README.md section 10): 16 with "
        "warm_lr_scale=0.1 added one entry to 100 in 4-7% of the full write's time.", default=None)
    repair_rounds: int = _help(
        "Incremental writes: rounds of training on the held items that slipped (with the new items and a fresh "
        "replay sample) before the version commits; a version still below target_recall commits with a warning "
        "naming them (WriteReport.slipped).", default=2)
    full_fallback: bool = _help(
        "Incremental writes: when the repair rounds leave items below target_recall, one last round replays every "
        "held item (what replay_items=None trains), so a bounded write never commits less than a full one would "
        "have reached; False commits after the repairs, with the warning.", default=True)
    warm_lr_scale: float = _help(
        "Incremental writes: the learning rate of a bounded write's rounds (replay_items set, warm from the "
        "previous version) is lr x this. A fresh Adam moves every weight by about lr per step whatever the "
        "gradient, which knocks a converged module off what it held; the full_fallback round keeps lr.",
        default=1.0)
    warm_min_epochs: int = _help(
        "Incremental writes: a bounded round trains at least min(min_epochs, this) passes over its items (the "
        "new ones and the replay sample) before it checks them; a warm module has learnt the answer format, so "
        "the long first plateau of a fresh write does not come again.", default=2)
    seed: int = _help("Seed for adapter init and data order: the same seed gives the same module.", default=0)
    progress: bool = _help("Show a progress bar.", default=True)
    kl_weight: float | None = _help(
        "Lambda of the preservation term: loss = CE(written answers) + lambda x KL(base || adapted) on "
        "preservation prompts (neighbours of the written facts, prompts given with write(preserve=), generic "
        "questions). None: edit_kl_weight for update(), for writes given preserve= and for writes of facts the "
        "base model already knows, 0 otherwise; a number: that lambda for every write (0 = off).",
        default=None,
    )
    edit_kl_weight: float = _help("The lambda that kl_weight=None gives edits (see kl_weight).", default=1.0)
    kl_prompts_per_step: int = _help("Preservation prompts in each optimizer step (cycled through all of them).",
                                     default=8)
    kl_tokens: int = _help(
        "Positions per preservation prompt the KL covers: the last prompt position and the base model's own "
        "greedy continuation, up to this many positions (stopping after end-of-turn).",
        default=12,
    )
    kl_neighbours: int = _help("Neighbour prompts per written fact: other subjects' questions of its relation.",
                               default=2)
    known_logprob: float = _help(
        "The base model 'knows' a fact when every token of its greedy answer to the canonical question has "
        "log-probability >= this (its least sure token is sure enough).",
        default=-1.75,
    )
    known_share: float = _help(
        "kl_weight=None turns the term on for a write when at least this share of its facts are known.",
        default=0.4,
    )
    known_sample: int = _help(
        "Check at most this many of a write's facts (a seeded sample) for known_share: the check generates with the "
        "base model (59 s for the demo's 100 entries on 2 cores), and a share is estimated well by 32.",
        default=32,
    )

    def __post_init__(self) -> None:
        _expect(self.lr > 0, "lr", "> 0", self.lr)
        _expect(self.kl_weight is None or (isinstance(self.kl_weight, (int, float)) and self.kl_weight >= 0),
                "kl_weight", "None or a float >= 0", self.kl_weight)
        _expect(self.edit_kl_weight >= 0, "edit_kl_weight", "a float >= 0", self.edit_kl_weight)
        _expect(self.kl_prompts_per_step >= 1, "kl_prompts_per_step", "an int >= 1", self.kl_prompts_per_step)
        _expect(self.kl_tokens >= 1, "kl_tokens", "an int >= 1", self.kl_tokens)
        _expect(self.kl_neighbours >= 0, "kl_neighbours", "an int >= 0", self.kl_neighbours)
        _expect(self.known_logprob <= 0, "known_logprob", "a log-probability <= 0", self.known_logprob)
        _expect(0.0 < self.known_share <= 1.0, "known_share", "a float in (0, 1]", self.known_share)
        _expect(self.known_sample >= 1, "known_sample", "an int >= 1", self.known_sample)
        _expect(self.max_steps >= 1, "max_steps", "an int >= 1", self.max_steps)
        _expect(0.0 < self.target_recall <= 1.0, "target_recall", "a float in (0, 1]", self.target_recall)
        _expect(self.seq_len >= 16, "seq_len", "an int >= 16", self.seq_len)
        _expect(self.batch_tokens >= self.seq_len, "batch_tokens", f">= seq_len ({self.seq_len})", self.batch_tokens)
        _expect(self.eval_every >= 0, "eval_every", "an int >= 0", self.eval_every)
        _expect(self.min_epochs >= 0, "min_epochs", "an int >= 0", self.min_epochs)
        _expect(self.lora_plus_ratio >= 1.0, "lora_plus_ratio", ">= 1", self.lora_plus_ratio)
        _expect(self.warmup_steps >= 0, "warmup_steps", "an int >= 0", self.warmup_steps)
        _expect(0.0 < self.adam_beta2 < 1.0, "adam_beta2", "a float in (0, 1)", self.adam_beta2)
        _expect(0.0 <= self.recalled_replay <= 1.0, "recalled_replay", "a float in [0, 1]", self.recalled_replay)
        _expect(self.replay_items is None or (isinstance(self.replay_items, int) and self.replay_items >= 0),
                "replay_items", "None or an int >= 0", self.replay_items)
        _expect(self.warm_min_epochs >= 0, "warm_min_epochs", "an int >= 0", self.warm_min_epochs)
        _expect(self.repair_rounds >= 0, "repair_rounds", "an int >= 0", self.repair_rounds)
        _expect(0.0 < self.warm_lr_scale <= 1.0, "warm_lr_scale", "a float in (0, 1]", self.warm_lr_scale)


MERGE_METHODS = ("ties", "linear", "dare_ties", "dare_linear", "cat", "svd")
COMPOSE_MODES = ("select", "merge")
COMBINE_MODES = ("stack", "gate")
ENGINES = ("local", "vllm")
ENGINE_FALLBACKS = ("error", "local")


@dataclass
class ReadConfig(_Config):
    max_new_tokens: int = _help("Longest answer generated.", default=48)
    batch_size: int = _help("Questions per generation batch.", default=32)
    progress: bool = _help("Show a progress bar on batched reads of more than one batch.", default=True)
    route: str = _help("Router for a namespace of several modules: embedding, all (merge every module), or a "
                       "registered name.", default="embedding")
    top_k: int = _help("Modules the router picks per question (more than one: see compose).", default=1)
    threshold: float = _help("Embedding router: below this cosine similarity no module answers (bare model).",
                             default=0.3)
    compose: Literal["select", "merge"] = _help(
        "A question routed to several modules: 'select' runs each module as its own row of one mixed-adapter "
        "batch and keeps the answer its module is surest of (mean log-likelihood per token); 'merge' merges "
        "them into one adapter (see merge). ask(merge=...) given explicitly always merges.", default="select")
    select_margin: float | None = _help(
        "compose='select': only the routed modules whose routing score is within this of the best one compete on "
        "confidence; the others do not answer (a memorisation module is sure of its own facts whatever it is "
        "asked). None: every routed module competes. Modules given explicitly (modules=) all score 1.", default=0.1)
    merge: str = _help(f"How several modules answering one question are merged under compose='merge': one of "
                       f"{MERGE_METHODS}.", default="ties")
    combine: Literal["stack", "gate"] = _help(
        "ask(context=...): 'stack' puts the context before the question with the module active; 'gate' "
        "answers closed-book and with the context in one batch and keeps the answer the model is surer of "
        "(mean log-likelihood per token; a tie goes to the context answer).", default="stack")
    pending_k: int = _help("Short-term memory: pending (remembered, not yet consolidated) items most like the "
                           "question put in its context; 0: reads ignore the buffer.", default=3)
    pending_threshold: float = _help("Short-term memory: a pending item below this cosine similarity to the "
                                     "question is left out of its context.", default=0.2)
    mixed_batches: bool = _help("Questions for different modules share one generation pass (peft adapter_names); "
                                "off: one pass per module.", default=True)
    cache_mb: float = _help("Memory budget of loaded adapters (LRU); the least recently used are unloaded.",
                            default=1024.0)
    engine: Literal["local", "vllm"] = _help(
        "Who generates: 'local' (the in-process model) or 'vllm' (a vLLM server, see `loramem serve`; loramem "
        "still routes, builds the prompts and chooses between rows). Scoring (logprobs) and streaming stay "
        "in-process.", default="local")
    engine_url: str | None = _help("engine='vllm': the server's base URL, e.g. http://127.0.0.1:8000.", default=None)
    engine_fallback: Literal["error", "local"] = _help(
        "engine='vllm' and the server cannot be reached: 'error' raises EngineUnavailable naming the URL; 'local' "
        "warns and answers in-process.", default="error")
    engine_timeout: float = _help("engine='vllm': seconds one request to the server may take.", default=300.0)

    def __post_init__(self) -> None:
        _expect(self.max_new_tokens >= 1, "max_new_tokens", "an int >= 1", self.max_new_tokens)
        _expect(self.batch_size >= 1, "batch_size", "an int >= 1", self.batch_size)
        _expect(isinstance(self.route, str) and bool(self.route), "route", "a router name", self.route)
        _expect(self.top_k >= 1, "top_k", "an int >= 1", self.top_k)
        _expect(-1.0 <= self.threshold <= 1.0, "threshold", "a cosine similarity in [-1, 1]", self.threshold)
        _expect(self.merge in MERGE_METHODS, "merge", f"one of {MERGE_METHODS}", self.merge)
        _expect(self.compose in COMPOSE_MODES, "compose", f"one of {COMPOSE_MODES}", self.compose)
        _expect(self.select_margin is None or self.select_margin >= 0, "select_margin", "None or a score margin >= 0",
                self.select_margin)
        _expect(self.combine in COMBINE_MODES, "combine", f"one of {COMBINE_MODES}", self.combine)
        _expect(self.cache_mb > 0, "cache_mb", "> 0", self.cache_mb)
        _expect(self.engine in ENGINES, "engine", f"one of {ENGINES}", self.engine)
        _expect(self.engine_fallback in ENGINE_FALLBACKS, "engine_fallback", f"one of {ENGINE_FALLBACKS}",
                self.engine_fallback)
        _expect(self.engine != "vllm" or (isinstance(self.engine_url, str) and self.engine_url.startswith(
            ("http://", "https://"))), "engine_url", "an http(s):// URL of the vLLM server when engine='vllm'",
            self.engine_url)
        _expect(self.engine_timeout > 0, "engine_timeout", "> 0 seconds", self.engine_timeout)
        _expect(self.pending_k >= 0, "pending_k", "an int >= 0", self.pending_k)
        _expect(-1.0 <= self.pending_threshold <= 1.0, "pending_threshold", "a cosine similarity in [-1, 1]",
                self.pending_threshold)


@dataclass
class PlanConfig(_Config):
    split: bool = _help("Split writes across modules when a capacity model says one module would overfill.",
                        default=True)
    fill: float = _help("Fill modules to at most this share of their capacity (headroom for later writes).",
                        default=0.8)
    auto_rank: bool = _help("Let the capacity model choose the rank of new modules (unless write() is given "
                            "lora=).", default=True)
    group_by: Literal["topic", "arrival"] = _help("How a split groups items: by embedding topic or arrival order.",
                                                  default="topic")

    def __post_init__(self) -> None:
        _expect(0.0 < self.fill <= 1.0, "fill", "a float in (0, 1]", self.fill)
        _expect(self.group_by in ("topic", "arrival"), "group_by", "'topic' or 'arrival'", self.group_by)


@dataclass
class Settings:
    """The configs one memory works with (``KnowledgeMemory``'s ``lora``, ``train_config``, ... attributes).

    Mutable on purpose: assigning ``mem.read_config = ReadConfig(...)`` changes what the next call uses, in
    every room that reads it."""

    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
