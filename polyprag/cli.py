"""`polyprag` command line: the flags of each command (the build's come from the configs' settings) and the
dispatch to what it does (commands.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rich.console import Console
from rich.logging import RichHandler

from . import atomic, distributed
from .lm.adapters import InventoryConfig
from .eval.bench import CORPUS_MODES, METHODS, OPTIONAL
from .commands import (cmd_ask, cmd_augment, cmd_bench, cmd_bench_speed, cmd_build, cmd_demo, cmd_eval, cmd_export,
                       cmd_export_lora, cmd_serve, console, DEMO_DOCS)
from .lm.generate import GenerationConfig
from .kb_commands import cmd_add, cmd_compact, cmd_inspect, cmd_remove, cmd_rollback, cmd_versions
from .text.datasets import DATASETS, RESERVED_PER_TYPE, SPLITS
from .baselines.dyprag import DypragConfig
from .errors import InputError
from .eval.evaluate import MODES
from .kb.knowledge import BuildConfig
from .kb.lifecycle import KEEP_VERSIONS
from .lm.models import BUNDLED, DEFAULT_DTYPE, DEFAULT_MODEL, DTYPE_CHOICES, SERVE_DTYPE, fix_mmap_threshold
from .baselines.prag import PragConfig
from .modes import EVAL_DEFAULT, SERVED
from .settings import add_flags
from .text.retrieve import TOP_K
from .method.config import TrainConfig


# oneDNN (torch's bf16 matmuls on a CPU) keeps one compiled primitive per shape, 1,024 by default: a bf16
# build's shapes held ~300 MiB of them (BENCHMARKS.md, "Why the bfloat16 build was not smaller"), for 15-20 %
# of its time (benchmarks/build_memory.py). Read at the first matmul, so the user's own value, set before, wins.
ONEDNN_CACHE = 16


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))
    args = _parser().parse_args(argv)
    console.quiet = not distributed.is_main()  # under torchrun, process 0 speaks for all
    logging.basicConfig(level=logging.INFO if not args.quiet and distributed.is_main() else logging.WARNING,
                        format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False, show_time=False)])
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    try:
        fix_mmap_threshold()  # the process's allocator, as oneDNN's cache above: the program's choice, not the library's
        for what, path, inside in _outputs(args):
            atomic.check_writable(path, what, inside)
        args.func(args)
    except InputError as e:  # a user's mistake: say what and how to fix it, no stack trace
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        return 2
    except OSError as e:  # the machine's: a full disk, a file another program removed or locked
        if e.filename is None:
            raise
        console.print(f"[bold red]error:[/] {e.filename}: {e.strerror or e}", highlight=False)
        return 1
    return 0


def _outputs(args) -> list[tuple[str, str, bool]]:
    """(where it came from, path, written inside it) of what the command will write: checked before any work starts
    (a build that trains for an hour must not then fail to save). bench and export write files into their --out;
    the others replace the path whole, beside it. (The augmentation cache is left out: appended to only when a
    document is new to it, a read-only one that holds them all serves.)"""
    named = [("--out", getattr(args, "out", None), args.func in (cmd_bench, cmd_export)),
             ("--json", getattr(args, "json_out", None), False)]
    if args.func in (cmd_add, cmd_compact, cmd_remove, cmd_rollback):
        named.append(("the knowledge base", args.kb, False))
    return [(what, path, inside) for what, path, inside in named if path]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyprag", description="Parametric RAG with latent-routed LoRA adapters.")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer one question over a corpus or a knowledge base")
    ask.add_argument("question", help="the question, in quotes")
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
    ev.add_argument("--modes", default=",".join(EVAL_DEFAULT), help=f"comma-separated, from {', '.join(MODES)}")
    ev.add_argument("--json", dest="json_out", help="write config, rows and predictions to this JSON file")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    exp = sub.add_parser("export", help="write a dataset's questions and closed corpus as JSONL files")
    exp.add_argument("--dataset", choices=(*DATASETS, "sample"), required=True,
                     help="a shared dataset (in --data-dir), or sample: the bundled 30 invented documents")
    _data_args(exp)
    exp.add_argument("--n", type=int, default=100, help="questions per split written (default 100)")
    exp.add_argument("--out", required=True, help="folder for docs.jsonl and questions.jsonl")
    exp.set_defaults(func=cmd_export)

    aug = sub.add_parser("augment", help="rewrite + QA pairs per document (PRAG protocol), cached")
    aug.add_argument("corpus", help="JSONL, JSON list, or folder of .txt/.md")
    aug.add_argument("--out", required=True, help="augmentations as JSONL")
    _augment_args(aug)
    _common(aug)
    aug.set_defaults(func=cmd_augment)

    build = sub.add_parser("build", help="encode a corpus into a knowledge base (adapters + routing)")
    build.add_argument("corpus", help="JSONL, JSON list, or folder of .txt/.md")
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
    bench.add_argument("--rows-from", help="an earlier run's --out of the same questions and settings but the build's: "
                       "its finished reader, PRAG and DyPRAG rows are copied, not recomputed (after poly's defaults change)")
    bench.add_argument("--prag-lr", type=float, default=PragConfig().lr, help="PRAG as published (default 3e-4)")
    bench.add_argument("--prag-epochs", type=int, default=PragConfig().epochs,
                       help="PRAG's epochs (default %(default)s, as published)")
    bench.add_argument("--prag-tuned-lr", type=float, default=1e-3, help="PRAG tuned for small models (default 1e-3)")
    bench.add_argument("--prag-tuned-epochs", type=int, default=2, help="prag-tuned's epochs (default 2)")
    bench.add_argument("--dyprag-lr", type=float, default=DypragConfig().lr,
                       help="DyPRAG's translator lr (default 1e-5, as published)")
    bench.add_argument("--dyprag-epochs", type=int, default=DypragConfig().epochs,
                       help="DyPRAG's translator epochs (default %(default)s, as published)")
    bench.add_argument("--dyprag-tuned-lr", type=float, default=1e-3, help="dyprag-tuned's lr (default 1e-3)")
    bench.add_argument("--dyprag-tuned-epochs", type=int, default=2, help="dyprag-tuned's epochs (default 2)")
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
    demo.add_argument("--json", dest="json_out", help="write config, rows and predictions to this JSON file")
    demo.add_argument("--out", help="keep the demo KB in this folder (default: a temporary one)")
    demo.add_argument("--n-docs", type=int, default=DEMO_DOCS,
                      help=f"the first N of the sample's 30 documents and their questions (default {DEMO_DOCS})")
    _build_args(demo)
    _common(demo)
    # the build's own defaults, as `build` + `ask` run them (until 2026-12-04 the demo trained a denser recipe of its
    # own: 8 QA pairs, one with its passage, 3 epochs, ~14 minutes; `--max-qa 8 --context-qa 1 --epochs 3` still does)
    demo.set_defaults(func=cmd_demo)


def _tool_parsers(sub) -> None:
    """serve, export-lora and bench-speed: a KB behind HTTP, its mixtures for other engines, the speeds."""
    serve = sub.add_parser("serve", help="HTTP service and web page over a KB: ask, add/remove documents (jobs)")
    serve.add_argument("kb", help="a knowledge base folder; additions and removals are saved back to it")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
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
    _device_args(serve, dtype=SERVE_DTYPE)
    serve.set_defaults(func=cmd_serve)
    exp_lora = sub.add_parser("export-lora", help="one question's adapter mixture as a standard PEFT LoRA folder",
                              description="Write the mixture a question (or a set of documents) gets as a PEFT "
                              "LoRA adapter (adapter_config.json + adapter_model.safetensors) that PEFT and "
                              "multi-LoRA servers load: retrieve and route in polyprag, generate anywhere.")
    exp_lora.add_argument("kb", help="a knowledge base folder")
    which = exp_lora.add_mutually_exclusive_group(required=True)
    which.add_argument("--question", help="retrieve its top-k documents and mix them as `poly` would")
    which.add_argument("--docs", help="comma-separated document ids to mix")
    exp_lora.add_argument("--k", type=int, default=TOP_K, help=f"documents retrieved for --question (default {TOP_K})")
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
    speed.add_argument("--prag-protocol-epochs", type=int, default=0,
                       help="also time PRAG's own recipe at N epochs: the protocol's dev choice, printed by "
                       "benchmarks/prag_table.py --flags (default 0: not timed)")
    speed.add_argument("--top-layers", type=int, default=0, help="poly's adapters on the last N blocks (default 0: all)")
    speed.add_argument("--paraphrases", type=int, default=BuildConfig().paraphrases,
                       help="poly's build with each QA pair asked N more ways (build's --paraphrases; "
                       "default build's, %(default)s)")
    speed.add_argument("--max-new-tokens", type=int, default=GenerationConfig().max_new_tokens,
                       help="per answer (default: ask's; the committed bench-speed results used 16)")
    speed.add_argument("--retrieval-sizes", default="10000,100000,1000000",
                       help="synthetic BM25 corpus sizes, comma-separated")
    speed.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes (build, serve)")
    _device_args(speed)
    speed.add_argument("--serve-dtype", default=SERVE_DTYPE, choices=DTYPE_CHOICES,
                       help="the serve child's --dtype (default serve's own, %(default)s)")
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


def _lifecycle_parsers(sub) -> None:
    """add / remove / versions / rollback / inspect: a knowledge base that changes, with its history."""
    _add_parser(sub)

    compact = sub.add_parser("compact", help="re-encode every document into a fresh inventory of M adapters",
                             description="Re-encode every document into a fresh inventory and routing (the build "
                             "config the KB records), with M adapters: by default as many as the build had, so "
                             "an inventory grown by `add --grow` shrinks back. Runs beside a service on the same "
                             "folder (it keeps answering and picks up the new version); if another writer saved "
                             "meanwhile, their additions and removals are carried over before saving.")
    compact.add_argument("kb", help="the knowledge base folder; saved as its next version")
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
    rm.add_argument("kb", help="the knowledge base folder; saved as its next version")
    rm.add_argument("ids", nargs="+", metavar="ID", help="document ids, as in the KB's docs.jsonl")
    rm.add_argument("--model", help="override the KB's own base model (must be the same model)")
    _keep_args(rm)
    _device_args(rm)
    rm.set_defaults(func=cmd_remove)

    ver = sub.add_parser("versions", help="list a knowledge base's versions and what produced each")
    ver.add_argument("kb", help="a knowledge base folder")
    ver.set_defaults(func=cmd_versions)

    back = sub.add_parser("rollback", help="make an earlier version current again (undo with another rollback)")
    back.add_argument("kb", help="the knowledge base folder")
    back.add_argument("version", type=int, help="a version number from `polyprag versions KB`")
    back.set_defaults(func=cmd_rollback)

    ins = sub.add_parser("inspect", help="routing statistics of a knowledge base; optional PCA plot")
    ins.add_argument("kb", help="a knowledge base folder")
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
    p.add_argument("--k", type=int, default=TOP_K, help="passages retrieved per question (default %(default)s)")
    p.add_argument("--chunk-words", type=int, default=0, help="split documents into ~N-word passages (0: no)")
    add_flags(p, GenerationConfig)
    _device_args(p)


def _device_args(p: argparse.ArgumentParser, dtype: str = DEFAULT_DTYPE) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, or auto (a GPU when one is visible; "
                   "default cpu)")
    p.add_argument("--dtype", default=dtype, choices=DTYPE_CHOICES,
                   help="the base model's weights (default %(default)s; auto: bfloat16 on a GPU or a CPU with native "
                        "bf16, else float32). Adapters train in fp32")


if __name__ == "__main__":
    sys.exit(main())
