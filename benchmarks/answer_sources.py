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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyprag.eval.bench import workload
from polyprag.text.retrieve import shuffled_hits
from polyprag.eval.compare import bootstrap_ci, bootstrap_ci_seeds
from polyprag.eval.metrics import normalize_answer
from protocol_table import seed_results
from rerun import run_data

SOURCES = ("question", "retrieved", "routed", "elsewhere", "nowhere", "yes/no")
PAIRS = (("poly", "poly-shuffled", "retrieved"), ("prag", "prag-shuffled", "retrieved"))


@dataclass
class Found:
    """Each seed's answer sources for one method: (S, Q) indices into SOURCES, and the seeds in that order."""
    sources: np.ndarray
    seeds: list[int]


def source(prediction: str, texts: dict[str, str]) -> str:
    """The first of SOURCES whose normalised text (`texts`, by source) holds the normalised prediction as whole
    words."""
    p = normalize_answer(prediction)
    if p in ("yes", "no"):
        return "yes/no"
    if p:
        for name in SOURCES[:4]:
            if name in texts and f" {p} " in f" {texts[name]} ":
                return name
    return "nowhere"


def sources(run: Path, args: argparse.Namespace) -> dict[str, Found]:
    """method -> its answers' sources over the run's seeds. The questions' retrieval is rerun as bench ran it and
    checked against the predictions'; a *-shuffled method's "routed" documents are the ones whose routing row or
    LoRA it was given (retrieve.shuffled_hits, seeded as bench seeds it)."""
    results = seed_results(run)
    config = results[0]["config"]
    questions, corpus = run_data(run, config, args)
    work = workload(questions, corpus, config["corpus_mode"], config["k"])
    text = {d.id: normalize_answer(d.content()) for d in corpus}
    everything = " | ".join(text.values())  # " | " keeps a match from spanning two documents
    joined = lambda ids: " | ".join(text[i] for i in ids)  # noqa: E731
    out: dict[str, Found] = {}
    for r in results:
        seed = r["config"]["build"]["training"]["seed"]
        donors = shuffled_hits(work.hits, [d.id for d in work.docs], seed)
        for method, predictions in r["predictions"].items():
            if [p["id"] for p in predictions] != [q.id for q in questions] or any(
                    p["retrieved"] != [h.doc_id for h in hs] for p, hs in zip(predictions, work.hits)):
                raise SystemExit(f"{run} {method}: its questions or retrieved documents are not these (other data "
                                 "or --chunk-words?): pass the run's own data (--data-dir, --corpus, --questions)")
            found = out.setdefault(method, Found(np.zeros((0, len(questions)), int), []))
            row = [SOURCES.index(source(p["prediction"], {
                       "question": normalize_answer(q.question), "retrieved": joined(p["retrieved"]),
                       **({"routed": joined(h.doc_id for h in d)} if method.endswith("-shuffled") else {}),
                       "elsewhere": everything}))
                   for p, q, d in zip(predictions, questions, donors)]
            found.sources, found.seeds = np.vstack([found.sources, row]), [*found.seeds, r["config"]["seed"]]
    return out


def report(run: Path, found: dict[str, Found]) -> str:
    lines = [f"**{run.name}** (% of answers, mean over the seeds each method has)", "",
             "| method | seeds | " + " | ".join(SOURCES) + " |", "|---|---|" + "---|" * len(SOURCES)]
    for method, f in sorted(found.items()):
        cells = [f"{100 * (f.sources == i).mean():.1f}" for i in range(len(SOURCES))]
        lines.append(f"| {method} | {len(f.seeds)} | " + " | ".join(cells) + " |")
    lines += ["", "| a | b | source | a − b (points) | 95% CI | over the seeds too |", "|---|---|---|---|---|---|"]
    for a, b, what in PAIRS:
        if (d := difference(found, a, b, what)) is not None:
            lines.append(f"| {a} | {b} | {what} | {d[0]:+.1f} | [{d[1]:+.1f}, {d[2]:+.1f}] | [{d[3]:+.1f}, {d[4]:+.1f}] |")
    return "\n".join(lines) + "\n"


def difference(found: dict[str, Found], a: str, b: str, what: str) -> tuple[float, ...] | None:
    """a − b in points of answers from `what`, with its paired bootstrap 95% CI over questions and the one over the
    seeds too (lo, hi each); None unless both ran the same seeds."""
    if a not in found or b not in found or found[a].seeds != found[b].seeds:
        return None
    i = SOURCES.index(what)
    hits_a, hits_b = 100.0 * (found[a].sources == i), 100.0 * (found[b].sources == i)  # (S, Q) each
    diff = hits_a.mean(0) - hits_b.mean(0)  # (Q,): seed-averaged
    lo, hi = bootstrap_ci(diff)
    return (float(diff.mean()), lo, hi, *bootstrap_ci_seeds(hits_a, hits_b))


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
        table[run.name] = {m: {name: round(100 * float((f.sources == i).mean()), 2) for i, name in enumerate(SOURCES)}
                           for m, f in found.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
