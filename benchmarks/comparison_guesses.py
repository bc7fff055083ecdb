"""How each method answers HotpotQA's comparison questions, from a finished bench seed's predictions.

    .venv/bin/python benchmarks/comparison_guesses.py benchmarks/results/protocol-hotpotqa-test-n100-smollm2/seed-0

Comparison questions are half of HotpotQA's test split, and a reader that knows nothing of them still scores:
a yes/no question is a coin it can call, a "which of A or B" question names both answers. So own − shuffled on
them can move with the reader's guesses alone. Per method (every `methods/*.json` of the folder): on the yes/no
questions (gold "yes" or "no"), how often it says "yes" (its normalised answer's first word) and how often that
first word is the gold; on the other comparison questions, mean F1 and exact match. No model runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyprag.eval.metrics import exact_match, f1_score, normalize_answer


def first_word(prediction: str) -> str:
    words = normalize_answer(prediction).split()
    return words[0] if words else ""


def guesses(predictions: list[dict]) -> dict:
    yes_no, other = [], []  # (gold, first word said) per yes/no question; the other comparison questions
    for p in predictions:
        if p.get("qtype") == "comparison":
            gold = normalize_answer(p["answers"][0])
            if gold in ("yes", "no"):
                yes_no.append((gold, first_word(p["prediction"])))
            else:
                other.append(p)
    return {"yes_no": len(yes_no), "gold_yes": sum(gold == "yes" for gold, _ in yes_no),
            "says_yes": sum(said == "yes" for _, said in yes_no),
            "right": sum(said == gold for gold, said in yes_no),
            "other": len(other),
            "other_f1": 100 * sum(f1_score(p["prediction"], p["answers"]) for p in other) / max(len(other), 1),
            "other_em": 100 * sum(exact_match(p["prediction"], p["answers"]) for p in other) / max(len(other), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seed_folder", type=Path, help="a bench seed folder with methods/*.json")
    args = ap.parse_args()
    files = sorted((args.seed_folder / "methods").glob("*.json"))
    if not files:
        raise SystemExit(f"{args.seed_folder}/methods: no finished rows there; pass a bench seed folder "
                         "(e.g. benchmarks/results/protocol-hotpotqa-test-n100-smollm2/seed-0).")
    rows = {f.stem: guesses(json.loads(f.read_text(encoding="utf-8"))["predictions"]) for f in files}
    first = next(iter(rows.values()))
    print(f"yes/no comparison questions: {first['yes_no']} ({first['gold_yes']} 'yes'); other comparison "
          f"questions: {first['other']}\n")
    print("| method | says yes | right (yes/no) | other: F1 | other: EM |\n|---|---|---|---|---|")
    for method, g in rows.items():
        print(f"| {method} | {g['says_yes']} | {g['right']} | {g['other_f1']:.1f} | {g['other_em']:.1f} |")


if __name__ == "__main__":
    main()
