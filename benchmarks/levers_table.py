"""Issue 32's ablation table on the dev split, from the runs `benchmarks/levers_dev.sh` writes.

    .venv/bin/python benchmarks/levers_table.py [runs] [--n 30|100] [--json OUT.json]

One row per lever and dataset (runs/levers-dev-DATASET-nN-smollm2-LEVER): poly, poly-shuffled, own − shuffled
with its paired bootstrap 95% CI (and per question type), poly-uniform, poly-combine, the bare reader, encode
s/doc; the seeds each run has. "arrow": poly-arrow, Arrow's rows on the same KB (nothing trained). "recall":
own − shuffled in points of answers drawn from the retrieved documents' words (benchmarks/answer_sources.py; it
reads the runs' questions and documents, so "-" where ../shared/data is missing). Reads the same seed folders as
benchmarks/protocol_table.py. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import answer_sources
from polyprag.errors import InputError
from protocol_table import summarise  # the same per-seed reading and comparisons as the protocol's table

NAME = re.compile(r"levers-dev-(?P<dataset>.+)-n(?P<n>\d+)-smollm2-(?P<lever>.+)")
BRIEFS = Path(__file__).parent / "data" / "briefs"  # levers_dev.sh's invented corpus and its dev questions


def lever_row(run: Path) -> dict:
    s, m = summarise(run), NAME.fullmatch(run.name)
    rows = s["rows"]
    own = next((c for c in s["comparisons"] if (c["a"], c["b"]) == ("poly", "poly-shuffled")), None)
    by_type = {x["qtype"]: x["f1_diff"] for x in s["own_minus_shuffled_by_type"] if x["a"] == "poly"}

    def f1(method: str) -> float | None:
        return rows[method]["f1"] if method in rows else None

    return {"lever": m["lever"], "dataset": m["dataset"], "n": int(m["n"]),
            "seeds": len(rows.get("poly", {}).get("f1_per_seed", [])), "poly": f1("poly"),
            "poly_shuffled": f1("poly-shuffled"), "own_minus_shuffled": own and own["f1_diff"],
            "ci95": own and own["ci95"], "own_minus_shuffled_by_type": by_type, "poly_uniform": f1("poly-uniform"),
            "poly_arrow": f1("poly-arrow"), "poly_combine": f1("poly-combine"), "bare": f1("closed-book-bare"),
            "encode_s_per_doc": rows.get("poly", {}).get("encode_s_per_doc")}


def recall(run: Path, data_dir: str) -> tuple[float, ...] | None:
    """poly − poly-shuffled in points of answers recalled from the retrieved documents, with its CI over questions
    (then the one over the seeds too: `answer_sources.difference`)."""
    files = argparse.Namespace(data_dir=data_dir, corpus=str(BRIEFS / "docs.jsonl"),
                               questions=str(BRIEFS / "questions-dev.jsonl"))
    try:
        return answer_sources.difference(answer_sources.sources(run, files), "poly", "poly-shuffled", "retrieved")
    except (InputError, FileNotFoundError):  # the dataset is not on this machine
        return None


def briefs_explored(root: Path) -> list[Path]:
    """The briefs exploration runs beside `root`'s: in it (runs/) or in its sibling levers-dev-n30
    (benchmarks/results)."""
    folders = dict.fromkeys([root, root.parent / "levers-dev-n30"])
    return [r for f in folders for r in f.glob("levers-dev-briefs-n30-smollm2-*") if NAME.fullmatch(r.name)]


def markdown(table: list[dict]) -> str:
    cell = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    lines = ["| dataset | lever | seeds | poly | shuffled | own − shuffled [95% CI] | by type | recall [95% CI] | "
             "uniform | arrow | poly-combine | bare | encode s/doc |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        ci = "-" if r["ci95"] is None else f"{r['own_minus_shuffled']:+.1f} [{r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}]"
        types = ", ".join(f"{t or 'all'} {d:+.1f}" for t, d in sorted(r["own_minus_shuffled_by_type"].items()))
        rc = r.get("recall")
        rc = "-" if rc is None else f"{rc[0]:+.1f} [{rc[1]:+.1f}, {rc[2]:+.1f}]"
        lines.append(f"| {r['dataset']} | {r['lever']} | {r['seeds']} | {cell(r['poly'])} | {cell(r['poly_shuffled'])} "
                     f"| {ci} | {types} | {rc} | {cell(r['poly_uniform'])} | {cell(r['poly_arrow'])} "
                     f"| {cell(r['poly_combine'])} | {cell(r['bare'])} | {cell(r['encode_s_per_doc'])} |")
    return "\n".join(lines) + "\n"


def verdicts(table: list[dict], datasets: tuple[str, ...] = ("briefs", "hotpotqa"),
             reference: str = "defaults") -> list[dict]:
    """levers_dev.sh's rule per lever that ran on every dataset: its score (mean F1 of poly and poly-combine,
    averaged over the datasets) against the reference's, and whether own − shuffled fell on any dataset. A
    reference other than the defaults (a confirmed lever, e.g. bf16) is compared with its compositions only
    (bf16+context1)."""
    done = ("poly", "poly_combine", "own_minus_shuffled")
    at = {(r["lever"], r["dataset"]): r for r in table if all(r.get(k) is not None for k in done)}  # landed rows
    if not all((reference, d) in at for d in datasets):
        return []

    def score(lever: str) -> float:
        return sum((at[lever, d]["poly"] + at[lever, d]["poly_combine"]) / 2 for d in datasets) / len(datasets)

    out = []
    levers = {r["lever"] for r in table} - {reference}
    if reference != "defaults":
        levers = {lever for lever in levers if lever.startswith(f"{reference}+")}
    for lever in sorted(levers):
        if not all((lever, d) in at for d in datasets):
            continue
        fell = [d for d in datasets if at[lever, d]["own_minus_shuffled"] < at[reference, d]["own_minus_shuffled"]]
        gain = score(lever) - score(reference)
        out.append({"lever": lever, "score": score(lever), "gain": gain, "own_fell_on": fell,
                    "seeds": {d: at[lever, d]["seeds"] for d in datasets},
                    "passes": gain > 0 and not fell})
    return out


def verdict_markdown(rows: list[dict], defaults: float | None, verdict: str = "to confirm",
                     reference: str = "defaults") -> str:
    """`verdict`: the last column's title: "to confirm" (the exploration) or "confirmed" (n = 100)."""
    lines = [f"| lever | score ({reference} {defaults:.1f}) | gain | own − shuffled fell on | seeds | {verdict} |",
             "|---|---|---|---|---|---|"]
    for v in rows:
        seeds = ", ".join(f"{d} {n}" for d, n in v["seeds"].items())
        lines.append(f"| {v['lever']} | {v['score']:.1f} | {v['gain']:+.1f} | {', '.join(v['own_fell_on']) or '-'} "
                     f"| {seeds} | {'yes' if v['passes'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default="runs")
    p.add_argument("--n", type=int, default=30, help="the exploration (30) or the confirmation (100, with the "
                                                      "briefs exploration runs) runs")
    p.add_argument("--json", help="also write the table as JSON here")
    p.add_argument("--data-dir", default="../shared/data", help="the shared datasets (the recall column)")
    p.add_argument("--reference", default="defaults", help="the run the rule compares with (default %(default)s; "
                   "a confirmed lever such as bf16: then only its compositions, bf16+LEVER)")
    args = p.parse_args()
    runs = sorted(r for r in Path(args.root).glob(f"levers-dev-*-n{args.n}-smollm2-*") if NAME.fullmatch(r.name))
    if args.n != 30:  # the confirmation reuses the briefs exploration runs (all 30 dev questions, 3 seeds already)
        runs = sorted(runs + briefs_explored(Path(args.root)))
    table = [{**lever_row(r), "recall": recall(r, args.data_dir)} for r in runs if any(r.glob("seed-*/methods/*.json"))]
    print(markdown(table), end="")
    rules = verdicts(table, reference=args.reference)
    if rules:
        defaults = rules[0]["score"] - rules[0]["gain"]
        step = "goes on to confirmation" if args.n == 30 else "is confirmed (on HotpotQA dev n = 100, 3 seeds)"
        print(f"\nThe rule (levers_dev.sh): a lever {step} when its score is higher than the {args.reference} run's "
              "and own − shuffled falls nowhere.\n")
        print(verdict_markdown(rules, defaults, "to confirm" if args.n == 30 else "confirmed", args.reference),
              end="")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
