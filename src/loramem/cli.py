"""The ``loramem`` command: write, remember, consolidate, ask, ls, forget, update, calibrate, export, validate,
serve, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .types import Document, Item, item_from_dict

EPILOG = """quick start:
  loramem demo                                      # 100 PhoneBook entries on the embedded model
  loramem write --store ./mem -n contacts facts.jsonl
  loramem remember --store ./mem -n notes "Alma's cat is called Miso."   # milliseconds; answerable at once
  loramem consolidate --store ./mem --watch --max-items 16             # train the buffer into modules
  loramem ask   --store ./mem -n contacts "What is the phone number of Dr. Alma Vance?"
  loramem ls    --store ./mem
  loramem forget --store ./mem -n contacts
  loramem validate --store ./mem MODULE --for vllm                     # what an engine would refuse
  loramem export --store ./mem MODULE --to gguf --out m.gguf           # llama.cpp adapter (or --to peft)
  loramem serve --store ./mem --port 8000                              # vLLM, every module, kept in step
  loramem ask --store ./mem --engine-url http://127.0.0.1:8000 "..."   # read through that server

input files: .jsonl (one object per line: {"subject","relation","object"} is a fact, {"text","title"} a
document) or .txt (the whole file is one document)."""


class InputError(ValueError):
    pass


def read_items(path: str | os.PathLike[str]) -> list[Item]:
    """Items from a .jsonl or .txt file; errors name the file and line."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{p}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if p.suffix == ".txt":
        if not text.strip():
            raise InputError(f"{p}: the file is empty")
        return [Document(text=text, title=p.stem)]
    if p.suffix != ".jsonl":
        raise InputError(f"{p}: expected a .jsonl or .txt file, got {p.suffix or 'no extension'}")
    items: list[Item] = []
    for n, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        try:
            data = json.loads(row)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise InputError(f"{p}:{n}: expected a JSON object, got {type(data).__name__}")
        try:
            items.append(item_from_dict(data))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{p}:{n}: {exc}") from None
    if not items:
        raise InputError(f"{p}: no items in the file")
    return items


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import LoraSpec, ModelConfig, ReadConfig, TrainConfig
    from .memory import KnowledgeMemory

    train = TrainConfig()
    lora = LoraSpec()
    if getattr(args, "rank", None):
        lora = LoraSpec(r=args.rank)
    if getattr(args, "max_steps", None):
        train = TrainConfig(max_steps=args.max_steps)
    model = ModelConfig(name=args.model, device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", "auto"))
    read = ReadConfig()
    if getattr(args, "engine_url", None):
        read = ReadConfig(engine="vllm", engine_url=args.engine_url)
    return KnowledgeMemory.open(args.store, model=model, lora=lora, train=train, read=read)


def cmd_write(args: argparse.Namespace) -> int:
    items: list[Item] = []
    for f in args.files:
        items += read_items(f)
    mem = _open(args)
    report = mem.write(items, namespace=args.namespace)
    print(report.summary())
    return 0 if report.reached_target else 3


def cmd_remember(args: argparse.Namespace) -> int:
    items: list[Item] = [Document(text=t) for t in args.texts]
    for f in args.file or ():
        items += read_items(f)
    if not items:
        raise InputError("give memories as arguments or with --file")
    from .buffer import remember
    from .store import ModuleStore

    store = ModuleStore(args.store)  # no model: remembering trains nothing
    ids = remember(store, items, args.namespace)
    for i in ids:
        print(i)
    return 0


def cmd_consolidate(args: argparse.Namespace) -> int:
    mem = _open(args)
    if not args.watch:
        reports = mem.consolidate(args.namespace)
        for r in reports:
            print(r.summary())
        if not reports:
            print("nothing pending")
        return 0 if all(r.reached_target for r in reports) else 3
    import logging
    import time

    from .consolidator import ConsolidationPolicy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    policy = ConsolidationPolicy(max_items=args.max_items, max_tokens=args.max_tokens, max_age_s=args.max_age,
                                 namespaces=None if args.namespace is None else (args.namespace,))
    worker = mem.start_consolidator(policy)
    print(f"consolidating {args.store} by {policy.to_dict()} (Ctrl-C stops after the write in flight)", flush=True)
    seen = 0
    try:
        while worker.running:
            time.sleep(1.0)
            for r in worker.reports[seen:]:
                print(r.summary(), flush=True)
            seen = len(worker.reports)
    except KeyboardInterrupt:
        print("stopping after the write in flight ...", file=sys.stderr, flush=True)
    finally:
        worker.stop()
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    questions = list(args.questions)
    if args.file:
        questions += [q for q in Path(args.file).read_text(encoding="utf-8").splitlines() if q.strip()]
    if not questions:
        raise InputError("give questions as arguments or with --file")
    mem = _open(args)
    namespace = None if args.base else args.namespace
    answers = mem.ask(questions, namespace=namespace)
    for a in answers:
        if args.json:
            print(json.dumps({"question": a.question, "answer": a.text, "modules": a.modules}))
        else:
            print(a.text if len(answers) == 1 else f"{a.question}\n  -> {a.text}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from . import pending
    from .store import ModuleStore

    store = ModuleStore(args.store)
    infos = store.modules(args.namespace)
    buffered = {ns: s for ns, s in pending.stats(store).items() if args.namespace in (None, ns)}
    for ns, s in buffered.items():
        print(f"pending  {ns:<16} {s['items']:>5} item(s), ~{s['tokens']} tokens, oldest {s['oldest_s']:.0f}s ago")
    worker = pending.get_state(store)
    if worker is not None:
        print(f"consolidator: {worker['state']} (pid {worker['pid']} on {worker['host']}, "
              f"{worker['age_s']:.0f}s ago{', ' + str(worker['detail']['namespace']) if worker['detail'].get('namespace') else ''})")
    if not infos:
        print("no modules")
        return 0
    from .capacity import CapacityModel

    header = (f"{'namespace':<16} {'module':<24} {'ver':>3} {'rank':>4} {'items':>6} {'k-tokens':>8} "
              f"{'capacity':>8} {'fill':>5} {'recall':>7} {'last write':>10}")
    print(header)
    models: dict[str, CapacityModel | None] = {}
    for i in infos:
        if i.base_model not in models:
            models[i.base_model] = CapacityModel.for_store(store.root, i.base_model)
        cap_model = models[i.base_model]
        r = int(i.lora_spec.get("r", 0))
        cap = cap_model.capacity(r) if cap_model is not None else None
        fill = f"{i.knowledge_tokens / cap:>5.0%}" if cap else f"{'?':>5}"
        took = f"{i.write_seconds:.1f}s" if i.write_seconds is not None else "?"
        print(
            f"{i.namespace:<16} {i.module_id:<24} {i.version:>3} {r:>4} {i.items:>6} "
            f"{i.knowledge_tokens:>8} {cap if cap is not None else '?':>8} {fill} {i.recall:>7.1%} {took:>10}"
        )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate
    from .config import TrainConfig

    mem = _open(args)
    train = TrainConfig.from_dict({**mem.train_config.to_dict(), "max_steps": args.max_steps, "progress": False,
                                   "target_recall": args.target, "batch_tokens": args.batch_tokens})
    ranks = [int(x) for x in args.ranks.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    out = args.out or os.path.join(args.store, "capacity.json")
    command = "loramem " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["calibrate"] else "loramem calibrate"
    points: list[dict[str, object]] = []

    def progress(point: dict[str, object]) -> None:
        points.append(point)
        print(json.dumps(point), flush=True)

    model = calibrate(mem, ranks=ranks, sizes=sizes, train=train, threshold=args.threshold, on_point=progress,
                      order=args.order, checkpoint=out, command=command)
    model.save(out)
    print(f"saturation (knowledge tokens at >= {args.threshold:.0%} recall) per rank: {model.saturation()}")
    print(f"efficiency (tokens / trainable parameter): "
          f"{ {r: f'{e:.2e}' for r, e in model.efficiency().items()} }")
    print(f"wrote {out}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    mem = _open(args)
    if args.item:
        report = mem.forget(args.item, namespace=args.namespace)
        if report is None:
            print(f"forgot {len(args.item)} item(s); nothing left to train, module(s) dropped")
        else:
            print(report.summary())
            print(f"verify: {json.dumps(report.details.get('verify'))}")
        return 0
    dropped = mem.forget_namespace(args.namespace)
    print(f"forgot namespace {args.namespace!r}: dropped {len(dropped)} module(s) {', '.join(dropped)}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    mem = _open(args)
    report = mem.update(read_items(args.file), namespace=args.namespace)  # one rebuild per module touched
    print(report.summary())
    print(f"verify: {json.dumps(report.details.get('verify'))}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_module
    from .store import ModuleStore

    out = export_module(ModuleStore(args.store), args.module, to=args.to, out=args.out, version=args.version,
                        arch=args.arch, dtype=args.dtype, overwrite=args.force)
    print(f"wrote {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .export import load_peft_folder, module_info, validate_for
    from .store import ADAPTER_CONFIG, ModuleStore

    if (Path(args.module) / ADAPTER_CONFIG).exists():  # a PEFT folder, e.g. one `loramem export` wrote
        label = args.module
        cfg, state = load_peft_folder(args.module)
    else:
        store = ModuleStore(args.store)
        info = module_info(store, args.module, args.version)
        label = f"{info.module_id} v{info.version}"
        cfg, state = store.load_adapter(info)
    problems = validate_for(args.engine, cfg, state, max_lora_rank=args.max_lora_rank)
    for problem in problems:
        print(f"{label}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{label}: ok for {args.engine}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import ServeError, serve

    try:
        return serve(args.store, model=args.model, host=args.host, port=args.port, python=args.python,
                     dtype=args.dtype, rank=args.max_lora_rank, max_loras=args.max_loras,
                     max_model_len=args.max_model_len, poll=args.poll, unload_after=args.unload_after,
                     ready_timeout=args.ready_timeout,
                     extra=args.vllm_args, say=lambda line: print(f"loramem serve: {line}", flush=True))
    except ServeError as exc:
        print(f"loramem serve: error: {exc}", file=sys.stderr)
        return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(entries=args.entries, store=args.store, model=args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loramem", description="Parametric memory: write knowledge into LoRA modules, ask it back.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, namespace: bool = True) -> None:
        p.add_argument("--store", default="./mem", help="store folder (default ./mem)")
        p.add_argument("--model", default="smollm2-135m", help="model alias, local folder or hub id")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
        p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="weights dtype (default auto: bf16 on a CUDA GPU that has it, else fp32)")
        if namespace:
            p.add_argument("-n", "--namespace", default="default", help="namespace (default 'default')")

    p = sub.add_parser("write", help="write .jsonl/.txt files into a namespace's module")
    common(p)
    p.add_argument("files", nargs="+")
    p.add_argument("--rank", type=int, help="LoRA rank for a new module")
    p.add_argument("--max-steps", type=int, help="training step cap")
    p.set_defaults(func=cmd_write)

    p = sub.add_parser("remember", help="keep memories in the short-term buffer (no training; answerable at once)")
    p.add_argument("--store", default="./mem", help="store folder (default ./mem)")
    p.add_argument("-n", "--namespace", default="default", help="namespace (default 'default')")
    p.add_argument("texts", nargs="*", help="memories, each one document")
    p.add_argument("--file", action="append", help=".jsonl/.txt file of items (repeatable)")
    p.set_defaults(func=cmd_remember)

    p = sub.add_parser("consolidate", help="train the pending items into modules (now, or --watch by a policy)")
    common(p, namespace=False)
    p.add_argument("-n", "--namespace", default=None, help="one namespace (default: every namespace with items pending)")
    p.add_argument("--max-steps", type=int, help="training step cap")
    p.add_argument("--watch", action="store_true", help="keep running: consolidate whenever a policy trigger fires")
    p.add_argument("--max-items", type=int, default=16, help="--watch: pending items that trigger a namespace")
    p.add_argument("--max-tokens", type=int, default=None, help="--watch: pending tokens that trigger it")
    p.add_argument("--max-age", type=float, default=600.0, help="--watch: seconds the oldest item may wait")
    p.set_defaults(func=cmd_consolidate)

    p = sub.add_parser("ask", help="ask questions (batched)")
    common(p)
    p.add_argument("questions", nargs="*")
    p.add_argument("--file", help="a file of questions, one per line")
    p.add_argument("--base", action="store_true", help="answer with the base model, no module")
    p.add_argument("--json", action="store_true", help="one JSON object per answer")
    p.add_argument("--engine-url", help="generate on this vLLM server (`loramem serve`) instead of in-process")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("ls", help="list modules: rank, items, knowledge tokens, recall")
    p.add_argument("--store", default="./mem")
    p.add_argument("-n", "--namespace", default=None)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("forget", help="delete items (--item ID), or a whole namespace's modules and items")
    common(p)
    p.add_argument("--item", action="append", help="item id to delete (repeatable); without it the namespace goes")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("update", help="replace facts/documents by new values (same subject+relation, or title)")
    common(p)
    p.add_argument("file", help=".jsonl of the new items")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("calibrate", help="measure how much a module holds per rank (PhoneBook sweep)")
    common(p, namespace=False)
    p.add_argument("--ranks", default="2,4,8,16,32,64")
    p.add_argument("--sizes", default="4,8,16,32,64,128", help="PhoneBook entries per point")
    p.add_argument("--max-steps", type=int, default=30, help="step budget per point (capacity is what fits in it)")
    p.add_argument("--batch-tokens", type=int, default=512)
    p.add_argument("--target", type=float, default=0.95, help="training stops early at this recall")
    p.add_argument("--threshold", type=float, default=0.9, help="recall a size must reach to count as held")
    p.add_argument("--order", choices=["size", "rank"], default="size", help="loop order (size: all ranks per size)")
    p.add_argument("--out", help="capacity JSON (default <store>/capacity.json, which the planner then uses)")
    p.set_defaults(func=cmd_calibrate)

    from .export import ENGINES, GGUF_ARCHS, VLLM_MAX_LORA_RANKS

    p = sub.add_parser("export", help="export a module as a PEFT folder (vLLM, LoRAX, Ollama) or a llama.cpp GGUF")
    p.add_argument("module", help="module id (see `loramem ls`)")
    p.add_argument("--store", default="./mem", help="store folder (default ./mem)")
    p.add_argument("--to", required=True, choices=["gguf", "peft"])
    p.add_argument("--out", required=True, help="folder (peft) or file (gguf) to write")
    p.add_argument("--version", type=int, help="a kept older version (default: the active one)")
    p.add_argument("--arch", choices=sorted(GGUF_ARCHS), help="gguf: llama.cpp architecture (default: from the "
                   "base model's config.json)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="gguf: tensor type")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", help="what vLLM or llama.cpp would refuse or mis-scale in a module")
    p.add_argument("module", help="module id, or a PEFT folder")
    p.add_argument("--store", default="./mem", help="store folder (default ./mem)")
    p.add_argument("--for", dest="engine", required=True, choices=list(ENGINES))
    p.add_argument("--version", type=int, help="a kept older version (default: the active one)")
    p.add_argument("--max-lora-rank", type=int, default=64, choices=list(VLLM_MAX_LORA_RANKS),
                   help="vllm: the server's --max-lora-rank (default 64)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("serve", help="an OpenAI-compatible vLLM server of the store's modules (make serve-venv)")
    p.add_argument("--store", default="./mem", help="store folder (default ./mem)")
    p.add_argument("--model", default=None, help="base model (default: the one the store's modules were written on)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--python", help="the Python with vLLM (default $LORAMEM_VLLM_PYTHON, else ./.venv-serve)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16", "auto"], default=None,
                   help="vLLM's dtype (default float32 without an NVIDIA GPU, as loramem reads on a CPU; else bfloat16)")
    p.add_argument("--max-lora-rank", type=int, choices=list(VLLM_MAX_LORA_RANKS),
                   help="default: the smallest allowed value that holds every module (at least 16)")
    p.add_argument("--max-loras", type=int, default=4, help="adapters in one batch (default 4)")
    p.add_argument("--max-model-len", type=int, default=2048, help="longest prompt + answer in tokens (default 2048)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the store for new versions")
    p.add_argument("--unload-after", type=float, default=60.0, help="seconds a superseded version stays loaded")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for vLLM to start")
    p.add_argument("vllm_args", nargs="*", help="more vLLM arguments, after --")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="write and ask 100 PhoneBook entries on the embedded model")
    p.add_argument("--entries", type=int, default=100)
    p.add_argument("--store", default=None, help="store folder (default: a new temporary folder)")
    p.add_argument("--model", default="smollm2-135m")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .store import StoreError

    try:
        return int(args.func(args))
    except (InputError, StoreError, KeyError, ValueError, ImportError,
            ConnectionError) as exc:  # DeviceError is a ValueError; EngineUnavailable a ConnectionError
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"loramem {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
