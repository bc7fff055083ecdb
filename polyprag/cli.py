"""`polyprag` command line: ask, eval, build, add/remove/versions/rollback/inspect, bench, demo, serve.

Only this module (and the server) touches env, devices, files."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from . import atomic, distributed, lifecycle
from .adapters import InventoryConfig
from .generate import GenerationConfig
from .augment import augment_documents, write_augmentations
from .bench import CORPUS_MODES, METHODS, OPTIONAL, Bench, BenchConfig, markdown, run_seeds
from .compare import markdown as compare_markdown
from .corpus import chunk_documents, load_corpus, write_jsonl
from .dyprag import DypragConfig
from .datasets import (CORPUS_NOTE, DATASETS, RESERVED_PER_TYPE, SPLITS, Split, held_out, load_dataset, load_questions,
                       write_questions)
from .errors import ConflictError, InputError
from .evaluate import MODES, EvalConfig, EvalResult, evaluate
from .kb import POLY_MODES, BuildConfig, KnowledgeBase, growth_for, rebase
from .lifecycle import KEEP_VERSIONS
from .models import BUNDLED, DEFAULT_MODEL, DTYPES, load_model, polyprag_home
from .prag import PragConfig
from .readers import SERVED, reader
from .retrieve import BM25Index
from .settings import add_flags, from_args
from .train import TrainConfig

console = Console()
log = logging.getLogger("polyprag")
SAMPLE = files("polyprag") / "data" / "sample"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console.quiet = not distributed.is_main()  # under torchrun, process 0 speaks for all
    logging.basicConfig(level=logging.INFO if not args.quiet and distributed.is_main() else logging.WARNING,
                        format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False, show_time=False)])
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    try:
        args.func(args)
    except InputError as e:  # a user's mistake: say what and how to fix it, no stack trace
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyprag", description="Parametric RAG with latent-routed LoRA adapters.")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer one question over a corpus or a knowledge base")
    ask.add_argument("question")
    ask.add_argument("--corpus", help="JSONL, JSON list, or folder of .txt/.md (for --mode rag)")
    ask.add_argument("--kb", help="a knowledge base folder from `polyprag build` (for the poly modes)")
    ask.add_argument("--mode", choices=SERVED, default=None,
                     help="default: poly with --kb, else rag")
    _common(ask)
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", help="score answering modes on a dataset or your own questions")
    ev.add_argument("--dataset", choices=DATASETS, help="a dataset in --data-dir (see docs/cli.md: Datasets)")
    _data_args(ev)
    ev.add_argument("--n", type=int, default=100, help="number of questions (default 100)")
    ev.add_argument("--corpus", help="your documents (instead of --dataset)")
    ev.add_argument("--questions", help='your questions: JSONL of {"id", "question", "answers": [...]}')
    ev.add_argument("--kb", help="a knowledge base: retrieval over its documents, enables the poly modes")
    ev.add_argument("--modes", default="closed-book,rag", help=f"comma-separated, from {', '.join(MODES)}")
    ev.add_argument("--json", dest="json_out", help="write config, rows and predictions to this JSON file")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    exp = sub.add_parser("export", help="write a dataset's questions and closed corpus as JSONL files")
    exp.add_argument("--dataset", choices=(*DATASETS, "sample"), required=True,
                     help="a shared dataset (in --data-dir), or sample: the bundled 30 invented documents")
    _data_args(exp)
    exp.add_argument("--n", type=int, default=100)
    exp.add_argument("--out", required=True, help="folder for docs.jsonl and questions.jsonl")
    exp.set_defaults(func=cmd_export)

    aug = sub.add_parser("augment", help="rewrite + QA pairs per document (PRAG protocol), cached")
    aug.add_argument("corpus")
    aug.add_argument("--out", required=True, help="augmentations as JSONL")
    _augment_args(aug)
    _common(aug)
    aug.set_defaults(func=cmd_augment)

    build = sub.add_parser("build", help="encode a corpus into a knowledge base (adapters + routing)")
    build.add_argument("corpus")
    build.add_argument("--out", required=True, help="the knowledge base folder (written atomically)")
    build.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint")
    _keep_args(build)
    _build_args(build)
    _common(build)
    build.set_defaults(func=cmd_build)

    _lifecycle_parsers(sub)

    _bench_parsers(sub)
    _tool_parsers(sub)

    return p


def _bench_parsers(sub) -> None:
    """bench and demo: the methods side by side on a dataset, and on the bundled sample."""
    bench = sub.add_parser("bench", help="the PRAG family side by side on a dataset: quality, storage, time")
    bench.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (in --data-dir), or sample (bundled)")
    _data_args(bench)
    bench.add_argument("--corpus", help="your documents (with --questions, instead of --dataset)")
    bench.add_argument("--questions", help='your questions: JSONL of {"id", "question", "answers": [...]}')
    bench.add_argument("--n", type=int, default=100, help="number of questions (default 100)")
    bench.add_argument("--methods", default="all", help=f"comma-separated from {', '.join(METHODS + OPTIONAL)}; 'all' stands for the first {len(METHODS)}")
    bench.add_argument("--corpus-mode", choices=CORPUS_MODES, default="per-question",
                       help="per-question (PRAG's: each question's top-k paragraphs) or closed (all paragraphs)")
    bench.add_argument("--out", required=True, help="run folder; rerunning the same command resumes it")
    bench.add_argument("--prag-lr", type=float, default=PragConfig().lr, help="PRAG as published (default 3e-4)")
    bench.add_argument("--prag-epochs", type=int, default=PragConfig().epochs)
    bench.add_argument("--prag-tuned-lr", type=float, default=1e-3, help="PRAG tuned for small models (default 1e-3)")
    bench.add_argument("--prag-tuned-epochs", type=int, default=2)
    bench.add_argument("--dyprag-lr", type=float, default=DypragConfig().lr,
                       help="DyPRAG's translator lr (default 1e-5, as published)")
    bench.add_argument("--dyprag-epochs", type=int, default=DypragConfig().epochs)
    bench.add_argument("--dyprag-tuned-lr", type=float, default=1e-3, help="dyprag-tuned's lr (default 1e-3)")
    bench.add_argument("--dyprag-tuned-epochs", type=int, default=2)
    bench.add_argument("--dyprag-train-n", type=int, default=100,
                       help="questions beyond --n whose paragraphs train DyPRAG's translator (default 100)")
    bench.add_argument("--add-epochs", type=int, help="poly-z / poly-grow: epochs of the add (default: the build's)")
    bench.add_argument("--add-context-qa", type=int,
                       help="poly-z / poly-grow: passage samples per added document (default: the build's)")
    bench.add_argument("--add-lr", type=float,
                       help="poly-grow: the new adapters' learning rate (default: the build's --lr-adapters)")
    bench.add_argument("--seeds", help="comma-separated seeds (e.g. 0,1,2): every trained method once per seed in "
                       "OUT/seed-S, then mean ± sd and paired bootstrap CIs in OUT/results.json (replaces --seed)")
    _build_args(bench, lists=True)
    _common(bench)
    # What `build` + `ask` run: the build's defaults and ask's answer length.
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="build a KB from the bundled sample of invented facts; compare modes")
    demo.add_argument("--json", dest="json_out")
    demo.add_argument("--out", help="keep the demo KB in this folder (default: a temporary one)")
    _build_args(demo)
    _common(demo)
    # Measured to fit ~15 minutes on a 2-core CPU (docs/experiments.md): up to 8 QA pairs and one passage sample per
    # document (invented facts, dense), 3 epochs. Answers as long as `ask`'s (one default for new tokens).
    demo.set_defaults(func=cmd_demo, max_qa=8, context_qa=1, rewrite=False, epochs=3, lr_adapters=2e-3)


def _tool_parsers(sub) -> None:
    """serve, export-lora and bench-speed: a KB behind HTTP, its mixtures for other engines, the speeds."""
    serve = sub.add_parser("serve", help="HTTP service and web page over a KB: ask, add/remove documents (jobs)")
    serve.add_argument("kb", help="a knowledge base folder; additions and removals are saved back to it")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--augment-url", default="", help="the LLM server that augments new documents, when the KB's manifest names one: it is used only if "
                        "you name the same URL here (a KB from elsewhere could name any server)")
    _keep_args(serve)
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer requests whose Host header is NAME (default: loopback names only, so a web "
                            "page cannot reach the server by DNS rebinding); repeatable; '*' allows any")
    serve.add_argument("--model", help="override the KB's own base model (folder, HF id, or bundled name)")
    serve.add_argument("--guard-reads", action="store_true",
                       help="every endpoint but the page needs X-API-Key (POLYPRAG_API_KEY, or POLYPRAG_READ_KEY for "
                            "a read-only key); same as POLYPRAG_GUARD_READS=1")
    _device_args(serve)
    serve.set_defaults(func=cmd_serve)
    exp_lora = sub.add_parser("export-lora", help="one question's adapter mixture as a standard PEFT LoRA folder",
                              description="Write the mixture a question (or a set of documents) gets as a PEFT "
                              "LoRA adapter (adapter_config.json + adapter_model.safetensors) that PEFT and "
                              "multi-LoRA servers load: retrieve and route in polyprag, generate anywhere.")
    exp_lora.add_argument("kb")
    which = exp_lora.add_mutually_exclusive_group(required=True)
    which.add_argument("--question", help="retrieve its top-k documents and mix them as `poly` would")
    which.add_argument("--docs", help="comma-separated document ids to mix")
    exp_lora.add_argument("--k", type=int, default=3, help="documents retrieved for --question (default 3)")
    exp_lora.add_argument("--out", required=True, help="the adapter folder (written atomically)")
    exp_lora.add_argument("--model", help="override the KB's own base model (must be the same model)")
    _device_args(exp_lora)
    exp_lora.set_defaults(func=cmd_export_lora)

    speed = sub.add_parser("bench-speed", help="answer latency, batched throughput, encoding, retrieval and memory, "
                           "side by side (one run on this machine; run it alone)")
    speed.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    speed.add_argument("--json", dest="json_out", default="bench-speed.json", help="where the JSON goes")
    speed.add_argument("--n-docs", type=int, default=20, help="sample documents encoded by poly and prag (default 20)")
    speed.add_argument("--n-questions", type=int, default=20, help="single-question latency samples (default 20)")
    speed.add_argument("--batch", type=int, default=32, help="questions in the heterogeneous batch (default 32)")
    speed.add_argument("--epochs", type=int, help="training epochs of both poly and prag (default: each method's own, "
                       "poly 2 and prag 1)")
    speed.add_argument("--poly-epochs", type=int, help="poly's training epochs alone (default: --epochs, or 2)")
    speed.add_argument("--top-layers", type=int, default=0, help="poly's adapters on the last N blocks (default 0: all)")
    speed.add_argument("--max-new-tokens", type=int, default=GenerationConfig().max_new_tokens,
                       help="per answer (default: ask's; the committed bench-speed results used 16)")
    speed.add_argument("--retrieval-sizes", default="10000,100000,1000000",
                       help="synthetic BM25 corpus sizes, comma-separated")
    speed.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes (build, serve)")
    _device_args(speed)
    speed.set_defaults(func=cmd_bench_speed)


def _add_parser(sub) -> None:
    add = sub.add_parser("add", help="add documents to a knowledge base (Poly-z: new routing rows only)",
                         description="Add documents. By default (Poly-z) only the new documents' routing rows are "
                         "trained: the inventory and every old document's answers stay as they are. --retrain "
                         "re-encodes all documents into a fresh inventory instead. To replace a document, "
                         "`polyprag remove KB ID`, then add the new text. Prints the new version number.")
    add.add_argument("kb", help="the knowledge base folder; saved as its next version")
    add.add_argument("corpus", help="the new documents: JSONL, JSON list, or folder of .txt/.md")
    add.add_argument("--retrain", action="store_true",
                     help="train a fresh inventory and routing on every document (old + new), with the KB's build config")
    add.add_argument("--epochs", type=int, help="training epochs (default: the KB's build setting)")
    add.add_argument("--context-qa", type=int,
                     help="passage samples per new document (default: the build's; fewer train faster)")
    add.add_argument("--lr-adapters", type=float,
                     help="with --grow: the new adapters' learning rate (default: the KB's build setting)")
    add.add_argument("--grow", default="0", metavar="N|auto",
                     help="append N fresh adapters, trained on the new documents only (old answers unchanged); "
                          "auto: as many as keep the KB's documents per adapter (default 0: Poly-z)")
    add.add_argument("--no-train", action="store_true",
                     help="route the new documents from their embeddings alone (router or nearest cluster; needs a "
                          "KB built with --routing-init cluster): seconds instead of a training run")
    add.add_argument("--augment-cache", help="JSONL cache (default: $POLYPRAG_HOME/augment-cache.jsonl)")
    add.add_argument("--chunk-words", type=int, default=0, help="split documents into ~N-word passages (0: no)")
    add.add_argument("--model", help="override the KB's own base model (must be the same model)")
    add.add_argument("--augment-url", default="", help="the LLM server that augments new documents, when the KB's manifest names one: it is used only if "
                        "you name the same URL here (a KB from elsewhere could name any server)")
    _keep_args(add)
    _device_args(add)
    add.set_defaults(func=cmd_add)


def _keep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-versions", type=int, default=KEEP_VERSIONS, metavar="N",
                   help=f"history versions kept besides the current one; older ones are deleted on save "
                        f"(default {KEEP_VERSIONS})")


def _keep(args) -> int:
    keep = getattr(args, "keep_versions", KEEP_VERSIONS)
    if keep < 0:
        raise InputError(f"--keep-versions {keep}: keep 0 or more versions (0: no history).")
    return keep


def _lifecycle_parsers(sub) -> None:
    """add / remove / versions / rollback / inspect: a knowledge base that changes, with its history."""
    _add_parser(sub)

    compact = sub.add_parser("compact", help="re-encode every document into a fresh inventory of M adapters",
                             description="Re-encode every document into a fresh inventory and routing (the build "
                             "config the KB records), with M adapters: by default as many as the build had, so "
                             "an inventory grown by `add --grow` shrinks back. Runs beside a service on the same "
                             "folder (it keeps answering and picks up the new version); if another writer saved "
                             "meanwhile, their additions and removals are carried over before saving.")
    compact.add_argument("kb")
    compact.add_argument("--adapters", type=int, help="inventory size M (default: the build's)")
    compact.add_argument("--epochs", type=int, help="training epochs (default: the KB's build setting)")
    compact.add_argument("--augment-cache", help="JSONL cache (default: $POLYPRAG_HOME/augment-cache.jsonl)")
    compact.add_argument("--model", help="override the KB's own base model (must be the same model)")
    compact.add_argument("--augment-url", default="", help="the LLM server that augments new documents, when the KB's manifest names one: it is used only if "
                        "you name the same URL here (a KB from elsewhere could name any server)")
    _keep_args(compact)
    _device_args(compact)
    compact.set_defaults(func=cmd_compact)

    rm = sub.add_parser("remove", help="remove documents from a knowledge base (inventory untouched)",
                        description="Remove documents by id: their routing rows, texts and index entries go; the "
                        "other documents' answers do not change. To replace a document, remove it and then "
                        "`polyprag add` the new text. Prints the new version number.")
    rm.add_argument("kb")
    rm.add_argument("ids", nargs="+", metavar="ID", help="document ids, as in the KB's docs.jsonl")
    rm.add_argument("--model", help="override the KB's own base model (must be the same model)")
    _keep_args(rm)
    _device_args(rm)
    rm.set_defaults(func=cmd_remove)

    ver = sub.add_parser("versions", help="list a knowledge base's versions and what produced each")
    ver.add_argument("kb")
    ver.set_defaults(func=cmd_versions)

    back = sub.add_parser("rollback", help="make an earlier version current again (undo with another rollback)")
    back.add_argument("kb")
    back.add_argument("version", type=int, help="a version number from `polyprag versions KB`")
    back.set_defaults(func=cmd_rollback)

    ins = sub.add_parser("inspect", help="routing statistics of a knowledge base; optional PCA plot")
    ins.add_argument("kb")
    ins.add_argument("--plot", help="write the PCA of the documents' routing vectors to this PNG")
    ins.add_argument("--json", dest="json_out", help="write the statistics to this JSON file")
    ins.add_argument("--top", type=int, default=5, help="adapters listed, and documents shown with neighbours (default 5)")
    ins.set_defaults(func=cmd_inspect)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="../shared/data",
                   help="folder holding the datasets (see docs/cli.md: Datasets)")
    p.add_argument("--data-file", help="read this file (e.g. a full official release) instead of the default one")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help=f"test (the headline questions: the first half of each type's rows) or dev (the second half, "
                        f"where defaults are chosen); the last {RESERVED_PER_TYPE} of each type are never read")


AUGMENT_SETTINGS = ("augmenter", "max_qa", "augment_url", "augment_model")  # the flags `augment` shares with `build`


def _augment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augment-cache", help="JSONL cache (default: $POLYPRAG_HOME/augment-cache.jsonl)")
    add_flags(p, BuildConfig, only=AUGMENT_SETTINGS)


def _build_args(p: argparse.ArgumentParser, lists: bool = False) -> None:
    """The build's settings as flags (their defaults, help and checks live in the configs: settings.py).
    `lists`: --adapters, --rank and --routing take comma-separated values; several values are an ablation."""
    _augment_args(p)
    many = ("n_adapters", "rank", "routing") if lists else ()
    add_flags(p, InventoryConfig, lists=many)
    add_flags(p, BuildConfig, skip=AUGMENT_SETTINGS, lists=many)
    add_flags(p, TrainConfig)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"folder, HF id, or bundled: {', '.join(BUNDLED)} (default {DEFAULT_MODEL}; "
                   "with --kb, the KB's own base model)")
    p.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    p.add_argument("--chunk-words", type=int, default=0, help="split documents into ~N-word passages (0: no)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    _device_args(p)


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, or auto (a GPU when one is visible; "
                   "default cpu)")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="the base model's weights (default float32; bfloat16 on a GPU). Adapters train in fp32")


def _generation(args) -> GenerationConfig:
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise InputError(f"--batch-size {args.batch_size} / --max-new-tokens {args.max_new_tokens}: both must be >= 1.")
    return GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)


def _docs(path: str, chunk_words: int):
    docs = load_corpus(path)
    return chunk_documents(docs, chunk_words) if chunk_words else docs


def cmd_ask(args) -> None:
    mode = args.mode or ("poly" if args.kb else "rag")
    if not args.question.strip():
        raise InputError("the question is empty; pass the question as the last argument.")
    if mode in POLY_MODES:
        if not args.kb:
            raise InputError(f"--mode {mode} needs --kb KB (build one with `polyprag build CORPUS --out KB`).")
        kb = _load_kb(args)
        hits = kb.retrieve([args.question], args.k)
        answer = reader(mode, kb=kb).answer([args.question], hits, _generation(args), progress=False)[0]
        _print_answer(answer, hits[0], {d.id: d for d in kb.docs})
        return
    if mode == "rag" and not (args.corpus or args.kb):
        raise InputError("--mode rag needs --corpus FILE or --kb KB (or use --mode closed-book).")
    docs, hits = [], []
    if mode == "rag":
        docs = load_corpus(f"{args.kb}/docs.jsonl") if args.kb else _docs(args.corpus, args.chunk_words)
        hits = BM25Index.build(docs).search([args.question], k=args.k)[0]
    answer = reader(mode, _lm(args), docs).answer([args.question], [hits], _generation(args), progress=False)[0]
    _print_answer(answer, hits, {d.id: d for d in docs})


def _lm(args):
    return load_model(args.model or DEFAULT_MODEL, args.device, args.dtype)


def _load_kb(args) -> KnowledgeBase:
    kb = KnowledgeBase.load(args.kb, _model_for_kb(args), args.device, args.dtype)
    kb.trust_augment_url(getattr(args, "augment_url", None) or "")  # only a URL the operator names is used
    return kb


def _model_for_kb(args) -> str | None:
    """A KB names its base model; --model only overrides it when given explicitly."""
    return args.model


def _print_answer(answer, hits, by_id) -> None:
    console.print(f"[bold]{answer.answer}[/]", highlight=False)
    console.print(f"[dim]model output: {answer.raw}[/]", highlight=False)
    for rank, h in enumerate(hits, 1):
        text = by_id[h.doc_id].content().replace("\n", " — ")
        console.print(f"[cyan]{rank}. {h.doc_id}[/] (BM25 {h.score:.2f}) {text[:200]}", highlight=False)


def cmd_serve(args) -> None:
    from .serve import serve  # the web stack is imported only by the command that needs it

    serve(args.kb, args.host, args.port, args.model, guard_reads=args.guard_reads, device=args.device,
          dtype=args.dtype, allowed_hosts=tuple(args.allow_host), keep_versions=_keep(args),
          augment_url=args.augment_url)


def cmd_eval(args) -> None:
    if args.kb:
        if not args.questions:
            raise InputError("--kb needs --questions Q.jsonl (retrieval runs over the KB's own documents).")
        kb = _load_kb(args)
        _run(args, load_questions(args.questions), kb.docs, _modes(args.modes), kb=kb)
        return
    if bool(args.dataset) == bool(args.corpus or args.questions):
        raise InputError("pass either --dataset NAME, or both --corpus DOCS and --questions Q.jsonl.")
    if args.dataset:
        if args.n < 1:
            raise InputError(f"--n {args.n}: ask for at least 1 question.")
        questions, docs = load_dataset(args.dataset, args.data_dir, args.n, args.data_file, Split(args.split))
    elif not (args.corpus and args.questions):
        raise InputError("--corpus and --questions go together: give both.")
    else:
        questions, docs = load_questions(args.questions), _docs(args.corpus, args.chunk_words)
    _run(args, questions, docs, _modes(args.modes))


def cmd_export(args) -> None:
    if args.n < 1:
        raise InputError(f"--n {args.n}: ask for at least 1 question.")
    questions, docs, _ = _bench_data(args)
    out = Path(args.out)
    write_jsonl(docs, out / "docs.jsonl")
    write_questions(questions, out / "questions.jsonl")
    console.print(f"wrote {len(docs)} documents and {len(questions)} questions to {out}")


def _modes(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _build_config(args) -> BuildConfig:
    return from_args(BuildConfig, args, inventory=from_args(InventoryConfig, args),
                     training=from_args(TrainConfig, args))


def _cache(args) -> Path:
    return Path(args.augment_cache) if args.augment_cache else polyprag_home() / "augment-cache.jsonl"


def cmd_augment(args) -> None:
    docs = _docs(args.corpus, args.chunk_words)
    BuildConfig(augmenter=args.augmenter, augment_url=args.augment_url)  # checks the pair, before any model loads
    lm = _lm(args) if args.augmenter == "llm" and not args.augment_url else None
    augs = augment_documents(docs, args.augmenter, lm, cache=_cache(args), max_qa=args.max_qa, url=args.augment_url,
                             model_name=args.augment_model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_augmentations(augs, out)
    console.print(f"wrote {len(augs)} augmentations ({sum(len(a.qa) for a in augs)} QA pairs) to {out}")


def cmd_build(args) -> None:
    config = _build_config(args)  # validate everything before loading a model
    docs = _docs(args.corpus, args.chunk_words)
    kb = _build(args, docs, config, Path(args.out), resume=args.resume)
    console.print(_diagnostics_table(kb.manifest.diagnostics))
    console.print(f"built {args.out}: {len(docs)} documents in {kb.manifest.build_seconds:.0f} s, "
                  f"{kb.storage_bytes(args.out)['total']:,} bytes")


def _build(args, docs, config: BuildConfig, out: Path, resume: bool) -> KnowledgeBase:
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.exists() and not resume and distributed.is_main():
        shutil.rmtree(ckpt)  # a fresh build must not pick up an old run's weights
    distributed.barrier()
    kb = KnowledgeBase.build(docs, _lm(args), config, cache=_cache(args), checkpoint_dir=ckpt)
    replaced = _save_once(kb, out, _keep(args))
    if distributed.is_main():
        shutil.rmtree(ckpt, ignore_errors=True)
    if replaced is not None:  # a build over a KB is a new version of it, and can be undone
        console.print(f"{out} held a knowledge base (version {replaced}): the new build is version "
                      f"{kb.manifest.version}; `polyprag rollback {out} {replaced}` brings the old one back",
                      highlight=False)
    return kb


def cmd_add(args) -> None:
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: train for at least 1 epoch.")
    if args.lr_adapters is not None and not args.lr_adapters > 0:
        raise InputError(f"--lr-adapters {args.lr_adapters}: must be > 0.")
    if args.context_qa is not None and args.context_qa < 0:
        raise InputError(f"--context-qa {args.context_qa}: give 0 or more passage samples per document.")
    docs = _docs(args.corpus, args.chunk_words)  # read and check the new documents before loading a model
    kb = _load_kb(args)
    before = len(kb.docs)
    training = kb.manifest.build.training
    training = replace(training, epochs=args.epochs) if args.epochs else training
    training = replace(training, lr_adapters=args.lr_adapters) if args.lr_adapters else training
    if args.retrain and (args.no_train or args.grow != "0" or args.context_qa is not None):
        raise InputError("--retrain re-encodes everything into the build's inventory; --no-train, --grow and "
                         "--context-qa apply to an addition only. Pick one.")
    if args.retrain and distributed.size() > 1:
        raise InputError("--retrain runs in one process (a save that meets another writer's version retrains "
                         "again); launch it without torchrun.")
    if args.retrain:
        seconds = kb.retrain(docs, training, cache=_cache(args))
        _save_rebasing(kb, Path(args.kb), _cache(args), _keep(args))
    else:
        seconds = kb.add(docs, training, cache=_cache(args), no_train=args.no_train, grow=_growth(args, len(docs), kb),
                         context_qa=args.context_qa)
        _save_once(kb, Path(args.kb), _keep(args))
    grown = (kb.manifest.additions or [{}])[-1].get("adapters_grown", 0) if not args.retrain else 0
    how = ("retrained on all documents" if args.retrain else "routed without training, inventory unchanged"
           if args.no_train else f"{grown} adapters grown, old ones unchanged" if grown else "Poly-z, inventory unchanged")
    console.print(f"{args.kb}: version {kb.manifest.version}, {before} → {len(kb.docs)} documents "
                  f"({how}, {seconds:.0f} s)", highlight=False)


def cmd_compact(args) -> None:
    if (args.adapters is not None and args.adapters < 1) or (args.epochs is not None and args.epochs < 1):
        raise InputError(f"--adapters {args.adapters} / --epochs {args.epochs}: both must be >= 1.")
    if distributed.size() > 1:
        raise InputError("compact runs in one process (a save that meets another writer's version retrains "
                         "again); launch it without torchrun.")
    kb = _load_kb(args)
    before = kb.manifest.inventory.n_adapters
    training = kb.manifest.build.training
    training = replace(training, epochs=args.epochs) if args.epochs else training
    seconds = kb.retrain([], training, cache=_cache(args), n_adapters=args.adapters)
    _save_rebasing(kb, Path(args.kb), _cache(args), _keep(args))
    console.print(f"{args.kb}: version {kb.manifest.version}, {len(kb.docs)} documents, {before} → "
                  f"{kb.manifest.inventory.n_adapters} adapters ({seconds:.0f} s)", highlight=False)


def _save_once(kb: KnowledgeBase, folder: Path, keep: int = KEEP_VERSIONS) -> int | None:
    """`kb.save`; under several processes (torchrun) process 0 writes and the others wait until it has."""
    replaced = kb.save(folder, keep) if distributed.is_main() else None
    distributed.barrier()
    return replaced


def _save_rebasing(kb: KnowledgeBase, folder: Path, cache: Path, keep: int = KEEP_VERSIONS, attempts: int = 5) -> None:
    """A long re-encoding is not thrown away when another writer saved meanwhile: their changes are carried
    over (`kb.rebase`) and the save tried again."""
    for _ in range(attempts - 1):
        try:
            kb.save(folder, keep)
            return
        except ConflictError:
            rebase(kb, folder, cache)
    kb.save(folder, keep)


def _growth(args, n_new: int, kb: KnowledgeBase) -> int:
    if args.grow == "auto":
        return growth_for(n_new, kb.manifest)
    if not args.grow.isdigit():
        raise InputError(f"--grow {args.grow!r}: give a number of adapters (0 or more) or 'auto'.")
    return int(args.grow)


def cmd_remove(args) -> None:
    kb = _load_kb(args)
    before = len(kb.docs)
    kb.remove(args.ids)
    kb.save(args.kb, _keep(args))
    console.print(f"{args.kb}: version {kb.manifest.version}, {before} → {len(kb.docs)} documents",
                  highlight=False)


def cmd_versions(args) -> None:
    t = Table(title=f"{args.kb}: versions")
    for col in ("version", "current", "updated (UTC)", "documents", "change"):
        t.add_column(col, justify="right" if col in ("version", "documents") else "left")
    for v in lifecycle.versions(args.kb):
        updated = v["updated"][:19].replace("T", " ")  # to the second, in UTC
        t.add_row(str(v["version"]), "*" if v["current"] else "", updated, str(v["n_docs"]), v["change"])
    console.print(t)


def cmd_rollback(args) -> None:
    lifecycle.rollback(args.kb, args.version)
    current = next(v for v in lifecycle.versions(args.kb) if v["current"])
    console.print(f"{args.kb}: version {current['version']} is current ({current['n_docs']} documents); "
                  "the version it replaced stays in the history", highlight=False)


def cmd_inspect(args) -> None:
    if args.top < 0:
        raise InputError(f"--top {args.top}: give 0 or more.")
    report = lifecycle.describe(args.kb, top=args.top)
    a = report["adapters"]
    console.print(f"[bold]{args.kb}[/] (version {report['version']}, base model {report['base_model']})\n"
                  f"documents: {report['n_docs']}\n"
                  f"adapters: M={a['n_adapters']}, rank {a['rank']}, alpha {a['alpha']:g}, targets "
                  f"{','.join(a['targets'])} ({a['layers']} layers), routing {a['routing']} ({a['groups']} "
                  f"group{'s' if a['groups'] > 1 else ''} per document)\n"
                  f"routing entropy (mean, / log M): {report['entropy_mean']:.3f}; effective adapters per "
                  f"document (exp entropy): {report['effective_adapters']:.2f} of {a['n_adapters']}\n"
                  f"within each layer: entropy {report['entropy_per_layer']:.3f}, effective adapters "
                  f"{report['effective_adapters_per_layer']:.2f}\n"
                  f"sparsity (share of weights < 1/(2M) = {report['sparsity_threshold']:.3g}): "
                  f"{report['sparsity']:.3f}", highlight=False)
    if report["training"]:
        console.print(_diagnostics_table(report["training"]))
    if report["additions"]:
        console.print(_additions_table(report["additions"]))
    used = Table(title="most used adapters")
    used.add_column("adapter", justify="right")
    used.add_column("mean weight", justify="right")
    for row in report["top_adapters"]:
        used.add_row(str(row["adapter"]), f"{row['mean_weight']:.4f}")
    console.print(used)
    near = Table(title="nearest documents in routing space (cosine of inference weights)")
    near.add_column("document")
    near.add_column("nearest")
    for row in report["neighbours"]:
        near.add_row(row["id"], ", ".join(f"{n['id']} ({n['cosine']:.4f})" for n in row["nearest"]))
    console.print(near)
    if args.plot:
        console.print(f"wrote {lifecycle.plot_routing(args.kb, args.plot)}")
    if args.json_out:
        write_json(report, Path(args.json_out))
        console.print(f"wrote {args.json_out}")


def _additions_table(additions: list[dict]) -> Table:
    t = Table(title="additions since the build")
    for name in ("at", "documents", "adapters grown", "M after", "epochs", "seconds", "tensor bytes added"):
        t.add_column(name, justify="left" if name == "at" else "right")
    for a in additions:
        t.add_row(*[("-" if a.get(k) is None else str(a[k])) for k in
                    ("at", "n_docs", "adapters_grown", "n_adapters", "epochs", "seconds", "tensor_bytes_added")])
    return t


def _diagnostics_table(epochs: list[dict]) -> Table:
    """The build's per-epoch record: is routing leaving uniform, are the adapters distinct?"""
    table = Table(title="training, per epoch")
    cols = ("epoch", "loss", "max_abs_z", "routing_grad_norm", "entropy", "effective_adapters", "entropy_per_layer",
            "adapter_cosine")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for e in epochs:
        table.add_row(*("-" if e.get(c) is None else f"{e[c]:.4g}" for c in cols))
    return table


def cmd_bench(args) -> None:
    ablations = _ablations(args)  # before any model or data is loaded: fail fast on a bad flag
    seeds = _seeds(args.seeds) if args.seeds else None
    config = BenchConfig(dataset=args.dataset or "custom", n=args.n, split=args.split, methods=_methods(args.methods),
                         corpus_mode=args.corpus_mode, k=args.k, build=_build_config(args),
                         prag=PragConfig(lr=args.prag_lr, epochs=args.prag_epochs, seed=args.seed),
                         prag_tuned=PragConfig(lr=args.prag_tuned_lr, epochs=args.prag_tuned_epochs, seed=args.seed),
                         dyprag=DypragConfig(lr=args.dyprag_lr, epochs=args.dyprag_epochs, seed=args.seed),
                         dyprag_tuned=DypragConfig(lr=args.dyprag_tuned_lr, epochs=args.dyprag_tuned_epochs, seed=args.seed),
                         dyprag_train_n=args.dyprag_train_n, generation=_generation(args), ablations=ablations, add_epochs=args.add_epochs,
                         add_lr=args.add_lr, add_context_qa=args.add_context_qa, device=args.device, dtype=args.dtype)
    questions, corpus, note = _bench_data(args)
    notes = {"command": "polyprag " + " ".join(sys.argv[1:]), "corpus_note": note}
    held = ([], [])
    if any(m.startswith("dyprag") for m in config.methods) and args.dataset not in (None, "sample"):
        held = held_out(args.dataset, args.data_dir, args.n, args.dyprag_train_n, args.data_file, Split(args.split))
    if seeds:
        summary = run_seeds(args.model or DEFAULT_MODEL, config, seeds, args.out, questions, corpus, notes, held)
        console.print(compare_markdown(summary), highlight=False, markup=False)
        console.print(f"wrote {args.out}/results.json and results.md (each seed's run in {args.out}/seed-S)")
        return
    result = Bench(args.model or DEFAULT_MODEL, config, args.out).run(questions, corpus, notes, held)
    console.print(markdown(result), highlight=False, markup=False)
    console.print(f"wrote {args.out}/results.json, results.md and plots")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {text!r}: give distinct seeds, e.g. --seeds 0,1,2.")
    return seeds


def _methods(text: str) -> tuple[str, ...]:
    """'all' stands for METHODS (not the optional rows), also inside a list ('all,rag-gold')."""
    names = [n for m in _modes(text) for n in (METHODS if m == "all" else (m,))]
    return tuple(dict.fromkeys(names))


def _ablations(args) -> tuple[tuple[str, tuple], ...]:
    """Flags with several values become ablation rows (the main rows keep the default); one value sets it."""
    d = InventoryConfig()
    flags = (("adapters", int, d.n_adapters), ("rank", int, d.rank), ("routing", str, "fine"))
    found = []
    for name, cast, default in flags:
        given = str(getattr(args, name))
        try:
            values = tuple(cast(v.strip()) for v in given.split(",") if v.strip())
        except ValueError:
            raise InputError(f"--{name} {given!r}: give an integer or comma-separated integers.") from None
        if not values or (name == "routing" and any(v not in ("fine", "coarse") for v in values)):
            raise InputError(f"--{name} {given!r}: give one value or a comma-separated list"
                             + (" of fine, coarse." if name == "routing" else "."))
        setattr(args, name, values[0] if len(values) == 1 else default)
        if len(values) > 1:
            found.append((name, values))
    return tuple(found)


def _bench_data(args) -> tuple[list, list, str]:
    if args.dataset == "sample":
        # two questions per document: the first of each is test, the second dev (the same 30 documents)
        questions = load_questions(SAMPLE / "questions.jsonl")[SPLITS.index(args.split)::2]
        return questions[: args.n], load_corpus(SAMPLE / "docs.jsonl"), ""
    if args.dataset:
        questions, docs = load_dataset(args.dataset, args.data_dir, args.n, args.data_file, Split(args.split))
        return questions, docs, CORPUS_NOTE.get(args.dataset, "")
    if not (args.corpus and args.questions):
        raise InputError("pass --dataset NAME, or both --corpus DOCS and --questions Q.jsonl.")
    return load_questions(args.questions)[: args.n], _docs(args.corpus, args.chunk_words), ""


def cmd_export_lora(args) -> None:
    from .export import export_lora
    from .retrieve import Hit

    kb = _load_kb(args)
    if args.question is not None:
        hits = kb.retrieve([args.question], args.k)
    else:
        ids = [d.strip() for d in args.docs.split(",") if d.strip()]
        unknown = [d for d in ids if d not in kb.row]
        if unknown or not ids:
            raise InputError(f"--docs {args.docs!r}: {unknown or 'no ids'} not in {args.kb}; ids are those in "
                             "its docs.jsonl (`polyprag inspect` lists counts, `versions` the history).")
        hits = [[Hit(d, 1.0) for d in ids]]
    config = export_lora(kb.lm.model, kb.mixing_weights(hits)[0], args.out, kb.manifest.base_model.spec)
    console.print(f"wrote {args.out}: rank-{config['r']} LoRA on {len(config['target_modules'])} modules, mixing "
                  f"{', '.join(h.doc_id for h in hits[0]) or 'every adapter alike (no document retrieved)'}")


def cmd_bench_speed(args) -> None:
    from .speed import SpeedConfig, bench_speed, markdown

    try:
        sizes = tuple(int(x) for x in args.retrieval_sizes.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--retrieval-sizes {args.retrieval_sizes!r}: give whole numbers, comma-separated "
                         "(e.g. 10000,100000).") from None
    if min(args.n_docs, args.n_questions, args.batch, args.epochs or 1, args.poly_epochs or 1, args.max_new_tokens,
           *sizes) < 1 or args.top_layers < 0:
        raise InputError("--n-docs, --n-questions, --batch, --epochs, --poly-epochs, --max-new-tokens and every "
                         "--retrieval-sizes value must be >= 1, --top-layers >= 0.")
    config = SpeedConfig(model=args.model, n_docs=args.n_docs, n_questions=args.n_questions, batch=args.batch,
                         max_new_tokens=args.max_new_tokens, retrieval_sizes=sizes,
                         **({"poly_epochs": args.epochs, "prag_epochs": args.epochs} if args.epochs else {}),
                         **({"poly_epochs": args.poly_epochs} if args.poly_epochs else {}), top_layers=args.top_layers,
                         rss=not args.no_rss, device=args.device, dtype=args.dtype)
    questions = [q.question for q in load_questions(SAMPLE / "questions.jsonl")]
    result = bench_speed(config, load_corpus(SAMPLE / "docs.jsonl"), questions, Path(args.json_out))
    table = Path(args.json_out).with_suffix(".md")  # written from the same result: the two cannot disagree
    table.write_text(markdown(result) + "\n", encoding="utf-8")
    console.print(markdown(result), highlight=False, markup=False)
    console.print(f"wrote {args.json_out} and {table}")


def cmd_demo(args) -> None:
    questions = load_questions(SAMPLE / "questions.jsonl")
    docs = load_corpus(SAMPLE / "docs.jsonl")
    config = _build_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "kb"
        kb = _build(args, docs, config, out, resume=False)
        storage = kb.storage_bytes(out)
        modes = SERVED
        result = _run(args, questions, docs, modes, kb=kb, save=False)
    extra = {"storage_bytes": storage["total"], "storage_bytes_per_doc": storage["routing_per_doc"],
             "inventory_bytes": storage["inventory"], "build_seconds": kb.manifest.build_seconds}
    console.print(f"knowledge base: {storage['total']:,} bytes in all ({storage['inventory']:,} inventory); "
                  f"{storage['routing_per_doc']:,} bytes of routing per document; built in "
                  f"{kb.manifest.build_seconds:.0f} s ({kb.manifest.build.augmenter} augmentation, "
                  f"{kb.manifest.build.training.epochs} epochs)")
    if args.json_out:
        for row in result.rows:
            row.update(extra)
        result.config["build"] = kb.manifest.to_json()
        write_json(result.to_json(), Path(args.json_out))
        console.print(f"wrote {args.json_out}")


def _run(args, questions, docs, modes, kb: KnowledgeBase | None = None, save: bool = True) -> EvalResult:
    config = EvalConfig(modes=modes, k=args.k, generation=_generation(args))
    lm = kb.lm if kb else _lm(args)
    result = evaluate(lm, questions, docs, config, kb=kb)
    console.print(results_table(result, title=f"{lm.spec}: {len(questions)} questions, {result.config['n_docs']} documents"))
    if save and args.json_out:
        write_json(result.to_json(), Path(args.json_out))
        console.print(f"wrote {args.json_out}")
    return result


def results_table(result: EvalResult, title: str) -> Table:
    t = Table(title=title)
    for col in ("method", "EM", "F1", "acc", "EM_prag", "F1_prag", f"R@{result.config['k']}", "s/q"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in result.rows:
        recall = "-" if r["recall_at_k"] is None else f"{r['recall_at_k']:.2f}"
        t.add_row(r["method"], f"{r['em']:.1f}", f"{r['f1']:.1f}", f"{r['acc']:.1f}", f"{r['em_prag']:.1f}",
                  f"{r['f1_prag']:.1f}", recall, f"{r['seconds_per_question']:.2f}")
    return t


def write_json(obj: dict, path: Path) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
