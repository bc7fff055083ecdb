"""PRAG's dev variants side by side and the variant benchmarks/prag_dev.sh's rule chooses (fixed in its header):
the highest mean of PRAG's F1 and its -combine F1 (each a mean over the run's seeds), averaged over the corpora,
chosen only if it beats the published recipe's same mean.

    .venv/bin/python benchmarks/prag_table.py [runs] [--json OUT.json] [--flags]

--flags prints only the chosen variant's `bench` flags for the `prag` rows (benchmarks/protocol.sh reads them).

Reads runs/prag-dev-CORPUS-n30-smollm2-VARIANT (the same seed folders as benchmarks/protocol_table.py). A variant
missing a corpus, or with fewer seeds than the published recipe has there, is listed but not scored. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from protocol_table import seed_results, summarise

NAME = re.compile(r"prag-dev-(?P<corpus>.+)-n30-smollm2-(?P<variant>.+)")
PUBLISHED = "published"  # prag_dev.sh's row for PRAG as published: methods prag and prag-combine


def cells(runs: Path) -> dict[str, dict[str, dict]]:
    """{variant: {corpus: {"prag", "combine", "seeds", "lr", "epochs"}}} of every landed run."""
    table: dict[str, dict[str, dict]] = {}
    for run in sorted(p for p in runs.iterdir() if NAME.fullmatch(p.name)):
        m = NAME.fullmatch(run.name)
        stem = "prag" if m["variant"] == PUBLISHED else "prag-tuned"
        rows = summarise(run, (stem, f"{stem}-combine"))["rows"]
        if stem not in rows or f"{stem}-combine" not in rows:
            continue
        seeds = min(len(rows[stem]["f1_per_seed"]), len(rows[f"{stem}-combine"]["f1_per_seed"]))
        trained = next(r for r in seed_results(run)[0]["rows"] if r["method"] == stem)  # what the run trained with
        table.setdefault(m["variant"], {})[m["corpus"]] = {
            "prag": rows[stem]["f1"], "combine": rows[f"{stem}-combine"]["f1"], "seeds": seeds,
            "lr": trained["lr"], "epochs": trained["epochs"]}
    return table


def scores(table: dict[str, dict[str, dict]]) -> dict[str, float]:
    """The rule's score of each variant complete on the published recipe's corpora and seeds."""
    if PUBLISHED not in table:
        raise SystemExit(f"no {PUBLISHED} run: `benchmarks/prag_dev.sh run {PUBLISHED}` (or `restore`) first")
    need = {corpus: c["seeds"] for corpus, c in table[PUBLISHED].items()}
    out = {}
    for variant, by_corpus in table.items():
        if all(corpus in by_corpus and by_corpus[corpus]["seeds"] >= n for corpus, n in need.items()):
            out[variant] = statistics.mean(statistics.mean((by_corpus[c]["prag"], by_corpus[c]["combine"]))
                                           for c in need)
    return out


def flags(table: dict[str, dict[str, dict]], score: dict[str, float]) -> str:
    """`bench` flags that train the `prag` rows (PRAG's data recipe and PRAG on poly's samples) as the choice did."""
    ranked = sorted(score, key=score.get, reverse=True)
    seeds = [{corpus: c["seeds"] for corpus, c in table[name].items()} for name in ranked[:2]]
    if len(seeds) == 2 and seeds[0] != seeds[1]:  # a choice over its runner-up is made on the same seeds
        raise SystemExit(f"the choice {ranked[0]} (seeds {seeds[0]}) and the runner-up {ranked[1]} (seeds {seeds[1]}) "
                         "ran on unequal seeds: run both on the same seeds (benchmarks/prag_dev.sh) first")
    trained = {(c["lr"], c["epochs"]) for c in table[ranked[0]].values()}
    if len(trained) != 1:
        raise SystemExit(f"the chosen variant trained with several settings across corpora: {sorted(trained)}")
    (lr, epochs), = trained
    return f"--prag-lr {lr:g} --prag-epochs {epochs}"


def markdown(table: dict[str, dict[str, dict]], score: dict[str, float]) -> str:
    corpora = sorted({c for by_corpus in table.values() for c in by_corpus})
    lines = ["| variant | " + " | ".join(f"{c}: prag / -combine (seeds)" for c in corpora) + " | score |",
             "|---|" + "---|" * (len(corpora) + 1)]
    for variant, by_corpus in table.items():
        row = [f"{by_corpus[c]['prag']:.1f} / {by_corpus[c]['combine']:.1f} ({by_corpus[c]['seeds']})"
               if c in by_corpus else "-" for c in corpora]
        lines.append(f"| {variant} | " + " | ".join(row) + f" | {score[variant]:.2f} |" if variant in score
                     else f"| {variant} | " + " | ".join(row) + " | incomplete |")
    best = max(score, key=score.get)
    # two decimals: variants level at one decimal are told apart (or shown level), as the rule compares them
    verdict = (f"the published recipe stays ({score[PUBLISHED]:.2f})" if best == PUBLISHED else
               f"{best} ({score[best]:.2f}, published {score[PUBLISHED]:.2f})")
    return "\n".join(lines) + f"\n\nThe rule's choice among the complete variants: {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", default="runs", type=Path)
    parser.add_argument("--json", type=Path, help="also write the table and the scores here")
    parser.add_argument("--flags", action="store_true", help="print only the choice's --prag-lr and --prag-epochs")
    args = parser.parse_args()
    table = cells(args.runs)
    score = scores(table)
    if args.flags:
        print(flags(table, score))
        return
    print(markdown(table, score))
    if args.json:
        args.json.write_text(json.dumps({"variants": table, "scores": score}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
