"""How many questions the rule augmenter's QA pairs could teach: is the gold answer a training target at all?

    .venv/bin/python benchmarks/answer_coverage.py [--datasets hotpotqa,2wiki] [--max-qa 3,6,12,0] [--json OUT]

Poly learns a document through its augmented samples; a question whose answer is no QA pair's answer in the
documents retrieved for it can only be answered from what the reader already knows or associates. For each dev
split (the invented briefs' 30 dev questions and each shared dataset's dev n = 100; never test), BM25 top-3 as
bench retrieves, and each `--max-qa` (0: every pair the rules find), the share of questions whose normalised gold
answer is the answer of a QA pair of a retrieved document (questions whose answer the question itself names, as
"X or Y?" does, are counted apart: a pair whose answer is X teaches no comparison; yes/no answers, which the
--contrast samples train, count in neither), beside the share whose answer is in the retrieved text
at all (what RAG can read), and the first share again with one title question per document (`--title-qa 1`,
augment.title_questions: the document's name as the answer). No model runs: the rules only (seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyprag.eval.metrics import normalize_answer
from polyprag.text.augment import title_questions
from polyprag.text.augment_rules import rule_augment
from polyprag.text.corpus import Document, load_corpus
from polyprag.text.datasets import Question, Split, load_dataset, load_questions
from polyprag.text.retrieve import BM25Index

BRIEFS = Path(__file__).parent / "data" / "briefs"


def coverage(questions: list[Question], docs: list[Document], max_qa: int, k: int = 3) -> dict:
    """Shares (%) of questions whose answer is a retrieved document's QA target / in its retrieved text."""
    hits = BM25Index.build(docs).search([q.question for q in questions], k=k)
    by_id = {d.id: d for d in docs}
    wanted = {h.doc_id for hs in hits for h in hs}
    pairs = {i: rule_augment(by_id[i], max_qa=max_qa or 10_000).qa for i in wanted}
    named = {i: {normalize_answer(a) for _, a in title_questions(by_id[i], 1)} for i in wanted}  # --title-qa 1
    targets = titled = read = in_question = 0
    for q, hs in zip(questions, hits):
        golds = {normalize_answer(a) for a in q.answers} - {"", "yes", "no"}  # yes/no: the --contrast samples'
        text = f" {normalize_answer(' '.join(by_id[h.doc_id].content() for h in hs))} "
        read += any(f" {g} " in text for g in golds)
        if any(f" {g} " in f" {normalize_answer(q.question)} " for g in golds):
            in_question += 1  # "X or Y?": a target named X teaches no comparison; counted apart
            continue
        taught = any(normalize_answer(p.answer) in golds for h in hs for p in pairs[h.doc_id])
        targets += taught
        titled += taught or any(golds & named[h.doc_id] for h in hs)
    n = len(questions)
    return {"max_qa": max_qa, "qa_per_doc": round(sum(map(len, pairs.values())) / len(pairs), 1),
            "answer_in_question": round(100 * in_question / n, 1), "answer_is_a_target": round(100 * targets / n, 1),
            "answer_is_a_target_with_title_qa": round(100 * titled / n, 1),
            "answer_in_retrieved_text": round(100 * read / n, 1), "questions": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="hotpotqa,2wiki", help="shared datasets (dev split, n = 100)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--max-qa", default="3,6,12,0", help="QA pairs per document at most (0: all the rules find)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    data = {"briefs": (load_questions(BRIEFS / "questions-dev.jsonl"), load_corpus(BRIEFS / "docs.jsonl"))}
    for name in filter(None, args.datasets.split(",")):
        data[name] = load_dataset(name, args.data_dir, 100, split=Split("dev"))
    rows = [{"dataset": name, **coverage(qs, docs, int(m))} for name, (qs, docs) in data.items()
            for m in args.max_qa.split(",")]
    print("| dataset (dev) | --max-qa | QA pairs per document | answer named in the question | answer is a QA target "
          "| ... or, with --title-qa 1, a title question's | answer in the retrieved text |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} ({r['questions']} q) | {r['max_qa'] or 'all'} | {r['qa_per_doc']} "
              f"| {r['answer_in_question']:.0f}% | {r['answer_is_a_target']:.0f}% "
              f"| {r['answer_is_a_target_with_title_qa']:.0f}% | {r['answer_in_retrieved_text']:.0f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
