"""`polyprag` command line: ask, eval, demo. Only this module (and the server) touches env, devices, files."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .answer import GenerationConfig, answer_questions
from .corpus import chunk_documents, load_corpus
from .datasets import DATASETS, load_dataset, load_questions
from .errors import InputError
from .evaluate import MODES, EvalConfig, EvalResult, evaluate
from .models import BUNDLED, DEFAULT_MODEL, load_model
from .retrieve import BM25Index

console = Console()
log = logging.getLogger("polyprag")
SAMPLE = files("polyprag") / "data" / "sample"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING, format="%(message)s",
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

    ask = sub.add_parser("ask", help="answer one question over a corpus")
    ask.add_argument("question")
    ask.add_argument("--corpus", help="JSONL, JSON list, or folder of .txt/.md (needed for --mode rag)")
    ask.add_argument("--mode", choices=["rag", "closed-book"], default="rag")
    _common(ask)
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", help="score answering modes on a dataset or your own questions")
    ev.add_argument("--dataset", choices=DATASETS, help="a dataset in --data-dir (see README: Datasets)")
    ev.add_argument("--data-dir", default="../shared/data")
    ev.add_argument("--n", type=int, default=100, help="number of questions (default 100)")
    ev.add_argument("--corpus", help="your documents (instead of --dataset)")
    ev.add_argument("--questions", help='your questions: JSONL of {"id", "question", "answers": [...]}')
    ev.add_argument("--modes", default="closed-book,rag", help=f"comma-separated, from {', '.join(MODES)}")
    ev.add_argument("--json", dest="json_out", help="write config, rows and predictions to this JSON file")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="closed-book vs rag on the bundled sample corpus of invented facts")
    demo.add_argument("--json", dest="json_out")
    _common(demo)
    demo.set_defaults(func=cmd_demo)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"folder, HF id, or bundled: {', '.join(BUNDLED)}")
    p.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    p.add_argument("--chunk-words", type=int, default=0, help="split documents into ~N-word passages (0: no)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)


def _generation(args) -> GenerationConfig:
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise InputError(f"--batch-size {args.batch_size} / --max-new-tokens {args.max_new_tokens}: both must be >= 1.")
    return GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)


def _docs(path: str, chunk_words: int):
    docs = load_corpus(path)
    return chunk_documents(docs, chunk_words) if chunk_words else docs


def cmd_ask(args) -> None:
    if args.mode == "rag" and not args.corpus:
        raise InputError("--mode rag needs --corpus FILE (or use --mode closed-book).")
    if not args.question.strip():
        raise InputError("the question is empty; pass the question as the last argument.")
    hits, passages = [], None
    if args.mode == "rag":
        docs = _docs(args.corpus, args.chunk_words)
        by_id = {d.id: d for d in docs}
        hits = BM25Index.build(docs).search([args.question], k=args.k)[0]
        passages = [[by_id[h.doc_id].content() for h in hits]]
    lm = load_model(args.model)
    answer = answer_questions(lm, [args.question], passages, _generation(args), progress=False)[0]
    console.print(f"[bold]{answer.answer}[/]", highlight=False)
    console.print(f"[dim]model output: {answer.raw}[/]", highlight=False)
    for rank, h in enumerate(hits, 1):
        text = by_id[h.doc_id].content().replace("\n", " — ")
        console.print(f"[cyan]{rank}. {h.doc_id}[/] (BM25 {h.score:.2f}) {text[:200]}", highlight=False)


def cmd_eval(args) -> None:
    if bool(args.dataset) == bool(args.corpus or args.questions):
        raise InputError("pass either --dataset NAME, or both --corpus DOCS and --questions Q.jsonl.")
    if args.dataset:
        if args.n < 1:
            raise InputError(f"--n {args.n}: ask for at least 1 question.")
        questions, docs = load_dataset(args.dataset, args.data_dir, args.n)
    elif not (args.corpus and args.questions):
        raise InputError("--corpus and --questions go together: give both.")
    else:
        questions, docs = load_questions(args.questions), _docs(args.corpus, args.chunk_words)
    _run(args, questions, docs, tuple(m.strip() for m in args.modes.split(",") if m.strip()))


def cmd_demo(args) -> None:
    questions = load_questions(SAMPLE / "questions.jsonl")
    docs = load_corpus(SAMPLE / "docs.jsonl")
    _run(args, questions, docs, ("closed-book", "rag"))


def _run(args, questions, docs, modes) -> None:
    config = EvalConfig(modes=modes, k=args.k, generation=_generation(args))
    lm = load_model(args.model)
    result = evaluate(lm, questions, docs, config)
    console.print(results_table(result, title=f"{lm.spec}: {len(questions)} questions, {len(docs)} documents"))
    if args.json_out:
        write_json(result.to_json(), Path(args.json_out))
        console.print(f"wrote {args.json_out}")


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
    """Atomic: a temp file beside the target, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
