"""Where each answer's words come from: the question, the documents retrieved for it, other documents, or nowhere.

    .venv/bin/python benchmarks/answer_sources.py RUN... [--data-dir ../shared/data] [--corpus D --questions Q]

A diagnostic of document knowledge beside F1, from a finished `polyprag bench` run's predictions (every seed
folder): an answer a parametric method gives that is in the text of the documents retrieved for the question, and
not in the question, was recalled from those documents' adapters (it is not in its prompt). With another
document's routing (poly-shuffled) the same reader should recall the *other* documents instead. So
poly − poly-shuffled on "retrieved" (with its paired bootstrap CI over questions) measures whether routing carries
the document's own content, whether or not the recalled words are the right answer. Matching is on SQuAD-normalised
text (the F1's normalisation) at word boundaries; yes/no answers are their own class. Readers with passages in
the prompt (rag, *-combine) copy from them: their rows say how often, not what the adapters recall.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from polyprag.eval.compare import bootstrap_ci
from polyprag.eval.metrics import normalize_answer
from protocol_table import seed_results
from rerun import run_data

SOURCES = ("question", "retrieved", "elsewhere", "nowhere", "yes/no")
PAIRS = (("poly", "poly-shuffled", "retrieved"), ("poly-shuffled", "poly", "elsewhere"),
         ("prag", "prag-shuffled", "retrieved"))


def source(prediction: str, question: str, retrieved: str, corpus: str) -> str:
    """The first of SOURCES whose normalised text holds the normalised prediction as whole words."""
    p = normalize_answer(prediction)
    if p in ("yes", "no"):
        return "yes/no"
    if not p:
        return "nowhere"
    for name, text in (("question", question), ("retrieved", retrieved), ("elsewhere", corpus)):
        if f" {p} " in f" {text} ":
            return name
    return "nowhere"


def sources(run: Path, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """method -> (S, Q) array of each seed's answer sources (as indices into SOURCES)."""
    results = seed_results(run)
    questions, corpus = run_data(run, results[0]["config"], args)
    text = {d.id: normalize_answer(d.content()) for d in corpus}
    everything = " | ".join(text.values())  # " | " keeps a match from spanning two documents
    asked = {q.question: normalize_answer(q.question) for q in questions}
    out: dict[str, list[list[int]]] = {}
    for r in results:
        for method, predictions in r["predictions"].items():
            out.setdefault(method, []).append([
                SOURCES.index(source(p["prediction"], asked.get(p["question"], normalize_answer(p["question"])),
                                     " | ".join(text.get(i, "") for i in p["retrieved"]), everything))
                for p in predictions])
    return {m: np.array(v) for m, v in out.items()}


def report(run: Path, found: dict[str, np.ndarray]) -> str:
    lines = [f"**{run.name}** (% of answers, mean over the seeds each method has)", "",
             "| method | seeds | " + " | ".join(SOURCES) + " |", "|---|---|" + "---|" * len(SOURCES)]
    for method, s in sorted(found.items()):
        cells = [f"{100 * (s == i).mean():.1f}" for i in range(len(SOURCES))]
        lines.append(f"| {method} | {len(s)} | " + " | ".join(cells) + " |")
    lines += ["", "| a | b | source | a − b (points) | 95% CI |", "|---|---|---|---|---|"]
    for a, b, what in PAIRS:
        if (d := difference(found, a, b, what)) is not None:
            lines.append(f"| {a} | {b} | {what} | {d[0]:+.1f} | [{d[1]:+.1f}, {d[2]:+.1f}] |")
    return "\n".join(lines) + "\n"


def difference(found: dict[str, np.ndarray], a: str, b: str, what: str) -> tuple[float, float, float] | None:
    """a − b in points of answers from `what`, with its paired bootstrap 95% CI; None unless both ran every seed."""
    if a not in found or b not in found or len(found[a]) != len(found[b]):
        return None
    i = SOURCES.index(what)
    diff = 100 * ((found[a] == i).mean(0) - (found[b] == i).mean(0))  # (Q,): seed-averaged per question
    lo, hi = bootstrap_ci(diff)
    return float(diff.mean()), lo, hi


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="bench run folders (seed-S/ inside)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--corpus", help="runs on your own files (bench --corpus): the same DOCS.jsonl")
    p.add_argument("--questions", help="... and the same Q.jsonl")
    p.add_argument("--json", help="also write {run: {method: {source: %}}} here")
    args = p.parse_args()
    table = {}
    for run in map(Path, args.runs):
        found = sources(run, args)
        print(report(run, found))
        table[run.name] = {m: {name: round(100 * float((s == i).mean()), 2) for i, name in enumerate(SOURCES)}
                           for m, s in found.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
