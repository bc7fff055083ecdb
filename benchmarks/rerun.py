"""What the answer-only scripts (combine.py, adapter_strength.py, storage_precision.py) share: a finished
`polyprag bench` run's knowledge base, questions, retrieval and decoding, and a row scored as `bench` does."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from polyprag.lm.answer import Answer
from polyprag.eval.bench import Workload, workload
from polyprag.eval.bench_report import breakdown
from polyprag.text.corpus import Document, load_corpus
from polyprag.text.datasets import Question, Split, load_dataset, load_questions
from polyprag.eval.evaluate import prediction, score_row
from polyprag.lm.generate import GenerationConfig
from polyprag.kb.knowledge import KnowledgeBase


@dataclass
class FinishedRun:
    folder: Path
    config: dict  # the run's config.json
    work: Workload
    kb: KnowledgeBase
    generation: GenerationConfig


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("run", help="a bench run folder (config.json, kb/)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--corpus", help="a run on your own files (bench --corpus): the same DOCS.jsonl")
    p.add_argument("--questions", help="... and the same Q.jsonl")
    return p


def finished_run(args: argparse.Namespace) -> FinishedRun:
    """`args` from `parser`: the run folder, and where its questions and documents are."""
    folder = Path(args.run)
    config = json.loads((folder / "config.json").read_text())
    questions, corpus = run_data(folder, config, args)
    work = workload(questions, corpus, config["corpus_mode"], config["k"])
    kb = KnowledgeBase.load(folder / "kb", dtype=config.get("dtype", "float32"))  # the base model as the run had it
    if {d.id for d in work.docs} != {d.id for d in kb.docs}:  # e.g. a corpus chunked otherwise (--chunk-words)
        raise SystemExit(f"{folder}/kb holds other documents than these questions retrieve: pass the run's own "
                         "data (the same --corpus, --questions, --data-dir)")
    return FinishedRun(folder, config, work, kb, GenerationConfig(**config["generation"]))


def run_data(folder: Path, config: dict, args: argparse.Namespace) -> tuple[list[Question], list[Document]]:
    """The questions and corpus a run (its config.json) read: a dataset by name, or the user's files again."""
    if config["dataset"] == "custom":  # the run's files are not recorded by name: the user names them again
        if not (args.corpus and args.questions):
            raise SystemExit(f"{folder} is a run on your own files: pass the same --corpus and --questions")
        return load_questions(args.questions)[: config["n"]], load_corpus(args.corpus)
    return load_dataset(config["dataset"], args.data_dir, config["n"], split=Split(config.get("split", "test")))


def scored(name: str, run: FinishedRun, answers: list[Answer], timings: list[float]) -> dict:
    """A `bench` row (EM/F1/latency, F1 per question type), printed as it lands."""
    w = run.work
    row = score_row(name, w.questions, answers, w.retrieved, timings, sum(timings))
    row.update(breakdown(w.questions, w.hits, [prediction(q, a, r) for q, a, r in zip(w.questions, answers, w.retrieved)],
                         added=set()))
    print(f"{row['method']}: F1 {row['f1']:.1f}, EM {row['em']:.1f}, by type {row.get('f1_by_type')}", flush=True)
    return row


def write(run: FinishedRun, name: str, rows: list[dict]) -> None:
    out = run.folder / name
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")
