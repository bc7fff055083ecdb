"""Several seeds of one benchmark as one result: mean ± sd per method and paired bootstrap CIs over questions.

A seed changes what is trained (poly's inventory and routing, PRAG's LoRAs, the shuffled controls' draw); the
questions, retrieval and readers stay, so each question's F1 is averaged over the seeds first and the
difference between two methods is resampled over questions (10,000 resamples, percentile 95% interval: `ci95`).
That interval holds the questions' sampling only: a method trained again on another seed moves its F1 as well
(±2–6 F1 at n = 100), so `ci95_seeds` resamples both: the questions paired, and the seeds paired too (seed s of
poly and of poly-shuffled answer with the same knowledge base, of prag and prag-shuffled with the same LoRAs: what a
seed's training does cancels in their difference; for methods trained apart, pairing by index is as valid as
drawing apart). With 3 seeds it is crude: 10 possible draws of the seeds, and a bootstrap of 3 values understates
their variance by about a third. "a beats b" only where both intervals lie above 0 and every seed agrees.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from .. import atomic
from .metrics import score

RESAMPLES = 10_000
COMPARISON_HEADER = "| a | b | a − b | 95% CI | seeds too | a − b per seed | reading |\n|---|---|---|---|---|---|---|"


def bootstrap_ci(diff: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile interval of the mean of `diff` (Q,) over questions resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(1)  # (R,)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_ci_seeds(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                       block: int = 1000) -> tuple[float, float]:
    """The 95% percentile interval of mean(a) − mean(b), `a` (S_a, Q) and `b` (S_b, Q) F1 per seed and question:
    each resample draws the questions and the seeds with replacement, both paired (the same draw of seeds for a and
    b when they have as many; apart otherwise)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1]} questions and b {b.shape[1]}: they cannot be paired")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, block):  # blocks keep the (block, S, Q) draws small for long question lists
        r = min(block, resamples - start)
        qs = rng.integers(0, a.shape[1], (r, a.shape[1]))  # (r, Q)
        seeds_a = rng.integers(0, len(a), (r, len(a)))  # (r, S_a)
        seeds_b = seeds_a if len(a) == len(b) else rng.integers(0, len(b), (r, len(b)))
        diff = a[seeds_a].mean(1) - b[seeds_b].mean(1)  # (r, Q): each resample's seed means per question
        means.append(np.take_along_axis(diff, qs, 1).mean(1))  # (r,)
    lo, hi = np.percentile(np.concatenate(means), [2.5, 97.5])
    return float(lo), float(hi)


def question_ids(results: list[dict], method: str) -> list:
    """The method's question ids in order, the same in every seed's run (else pairing by position would lie)."""
    ids = [[p.get("id") for p in r["predictions"][method]] for r in results]
    if any(x != ids[0] for x in ids[1:]):
        raise ValueError(f"{method}: the seeds' runs answered different questions or in another order; they "
                         "cannot be paired (rerun them on the same questions)")
    return ids[0]


def per_seed_f1(results: list[dict], method: str) -> np.ndarray:
    """(S, Q) F1 × 100 of each seed's run and question (checked to be the same questions in every run)."""
    question_ids(results, method)
    runs = [[score(p["prediction"], p["answers"]).f1 for p in r["predictions"][method]] for r in results]
    return 100 * np.array(runs, dtype=float)


def per_question_f1(results: list[dict], method: str) -> np.ndarray:
    """(Q,) F1 × 100 of each question, averaged over the seeds' runs."""
    return per_seed_f1(results, method).mean(0)


def compare(results: list[dict], a: str, b: str, qtypes: list[str] | None = None) -> dict:
    """a − b in F1 over the questions (or those of one type), with its paired bootstrap 95% CI."""
    if question_ids(results, a) != question_ids(results, b):
        raise ValueError(f"{a} and {b} answered different questions or in another order: they cannot be paired")
    keep = np.ones(len(results[0]["predictions"][a]), bool) if qtypes is None else np.array(qtypes)
    fa, fb = per_seed_f1(results, a)[:, keep], per_seed_f1(results, b)[:, keep]  # (S, Q) each
    diff = fa.mean(0) - fb.mean(0)  # (Q,)
    lo, hi = bootstrap_ci(diff)
    seeds_lo, seeds_hi = bootstrap_ci_seeds(fa, fb)
    per_seed = fa.mean(1) - fb.mean(1)  # (S,): each seed's own difference
    # 3 decimals: reports print 1, and rounding twice (5.747 -> 5.75 -> 5.8) would misstate the last digit
    return {"a": a, "b": b, "f1_diff": round(float(diff.mean()), 3), "ci95": [round(lo, 3), round(hi, 3)],
            "ci95_seeds": [round(seeds_lo, 3), round(seeds_hi, 3)],
            "f1_diff_per_seed": [round(float(x), 3) for x in per_seed], "n_questions": int(len(diff)),
            "seeds": [r["config"]["seed"] for r in results]}


def summarise(results: list[dict], seeds: list[int], pairs: tuple[tuple[str, str], ...] = (),
              controls: tuple[tuple[str, str], ...] = ()) -> dict:
    """One result of the seeds' runs (each a Bench result of the same questions): rows, the a − b comparisons
    of `pairs` where both ran, and the `controls` pairs (own − shuffled) per question type too."""
    first = results[0]
    methods = [r["method"] for r in first["rows"] if all(r["method"] in x["predictions"] for x in results)]
    rows = [_row(m, [next(r for r in x["rows"] if r["method"] == m) for x in results], per_seed_f1(results, m).mean(1))
            for m in methods]
    types = [p.get("qtype", "") for p in first["predictions"][methods[0]]] if methods else []
    comparisons = [compare(results, a, b) for a, b in pairs if a in methods and b in methods]
    own = []
    for a, b in controls:
        if a in methods and b in methods:
            for t in sorted(set(types)):
                own.append({**compare(results, a, b, [x == t for x in types]), "qtype": t})
    config = {k: v for k, v in first["config"].items() if k not in ("seed", "command")}
    return {"config": {**config, "seeds": seeds}, "rows": rows, "comparisons": comparisons,
            "own_minus_shuffled_by_type": own}


def write_summary(out: Path, results: list[dict], seeds: list[int], pairs: tuple[tuple[str, str], ...] = (),
                  controls: tuple[tuple[str, str], ...] = ()) -> dict:
    """OUT/results.json and results.md from the seeds' results (bench's, and benchmarks/resummarise.py's for a run
    whose summary an older compare.py wrote)."""
    summary = summarise(results, seeds, pairs, controls)
    atomic.write_text(out / "results.json", json.dumps(summary, indent=1, ensure_ascii=False))
    atomic.write_text(out / "results.md", markdown(summary))
    return summary


def _row(method: str, runs: list[dict], seeds_f1: np.ndarray) -> dict:
    # (S,) F1 from the predictions, not the rows: a row's stored F1 is rounded (to 2 decimals before 2026-12-07)
    f1, em = [round(float(x), 3) for x in seeds_f1], [r["em"] for r in runs]
    types = sorted({t for r in runs for t in r.get("f1_by_type", {})})
    # 3 decimals, as compare's differences: a report's one decimal is rounded once (20.253 -> 20.3, not 20.2)
    return {"method": method, "f1": round(statistics.fmean(f1), 3), "f1_sd": round(_sd(f1), 3),
            "f1_per_seed": f1, "em": round(statistics.fmean(em), 3), "recall_at_k": runs[0]["recall_at_k"],
            "f1_by_type": {t: round(statistics.fmean(r["f1_by_type"].get(t, 0.0) for r in runs), 3) for t in types},
            **{k: runs[0][k] for k in ("storage_bytes", "storage_bytes_per_doc", "samples", "samples_per_doc")
               if k in runs[0]},
            **({"encode_s_per_doc": round(statistics.fmean(r["encode_s_per_doc"] for r in runs), 3)}  # each seed trains
               if all("encode_s_per_doc" in r for r in runs) else {}),
            # the lowest seed's: below ~1.5 on a 2-core machine, some seed's times were inflated (bench.Bench._method)
            **({"cpu_per_wall_min": min(r["cpu_per_wall"] for r in runs)}
               if all("cpu_per_wall" in r for r in runs) else {}),
            "commits": sorted({code_label(r["code"], "commit") for r in runs if r.get("code")}),
            "code": sorted({code_label(r["code"], "tree") for r in runs if r.get("code")}),
            "machines": sorted({machine_label(r["machine"]) for r in runs if r.get("machine")})}


def machine_label(machine: dict) -> str:
    """A row's CPU as its times depend on it (lm.models.machine): seeds timed on two of them are not averaged
    unawares."""
    bf16 = "native bf16" if machine["bf16_native"] else "no native bf16"
    return f"{machine['cpu']}, {machine['cores']} cores, {bf16}, {machine['threads']} threads"


def code_label(code: dict, key: str) -> str:
    """A row's commit (key "commit") or package tree (key "tree"; the commit for rows recorded before trees
    were), "+changes" where its files differed from it."""
    return str(code.get(key) or code["commit"]) + ("+changes" if code["dirty"] else "")


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def markdown(summary: dict) -> str:
    c = summary["config"]
    seeds = ", ".join(map(str, c["seeds"]))
    lines = [f"# {c['dataset']} ({c.get('split', 'test')} split): {c['n_questions']} questions, seeds {seeds}", "",
             f"Model `{c['model']}`, k = {c['k']}, greedy, at most {c['generation']['max_new_tokens']} new tokens; "
             "F1 mean ± sd over the seeds (a reader's row is the same every seed).", "",
             "| method | F1 | F1 per seed | EM | R@k |", "|---|---|---|---|---|"]
    for r in summary["rows"]:
        recall = "-" if r["recall_at_k"] is None else f"{r['recall_at_k']:.2f}"
        per_seed = " / ".join(f"{x:.1f}" for x in r["f1_per_seed"])
        lines.append(f"| {r['method']} | {r['f1']:.1f} ± {r['f1_sd']:.1f} | {per_seed} | {r['em']:.1f} | {recall} |")
    lines += ["", "Paired bootstrap over questions (each question's F1 averaged over the seeds; 10,000 resamples), and",
              "over the seeds too (each method's seeds resampled apart, the questions paired):",
              "", *COMPARISON_HEADER.splitlines()]
    lines += [comparison_line(x) for x in summary["comparisons"]]
    if summary["own_minus_shuffled_by_type"]:
        lines += ["", "Own − shuffled (the knowledge that is the document's own) per question type:", "",
                  "| a | b | type | questions | a − b | 95% CI | seeds too | reading |", "|---|---|---|---|---|---|---|---|"]
        for x in summary["own_minus_shuffled_by_type"]:
            lines.append(f"| {x['a']} | {x['b']} | {x['qtype'] or 'all'} | {x['n_questions']} | {x['f1_diff']:+.1f} | "
                         f"{interval(x['ci95'])} | {interval(x.get('ci95_seeds'))} | {verdict(x)} |")
    mixed = [r["method"] for r in summary["rows"] if len(r.get("code", r.get("commits", []))) > 1]
    commits = sorted({c for r in summary["rows"] for c in r.get("commits", [])})
    if commits:
        lines += ["", f"Code: {', '.join(commits)}" + (f"; **rows whose seeds ran different package code: {', '.join(mixed)}**"
                                                        if mixed else ".")]
    machines = sorted({m for r in summary["rows"] for m in r.get("machines", [])})
    if machines:
        timed_apart = [r["method"] for r in summary["rows"] if len(r.get("machines", [])) > 1]
        lines += ["", f"Machines: {'; '.join(machines)}" + (f"; **rows whose seeds were timed on different machines "
                                                            f"(their times are not comparable): {', '.join(timed_apart)}**"
                                                            if timed_apart else ".")]
    return "\n".join(lines) + "\n"


def comparison_line(x: dict) -> str:
    seeds = " / ".join(f"{d:+.1f}" for d in x.get("f1_diff_per_seed", []))
    return (f"| {x['a']} | {x['b']} | {x['f1_diff']:+.1f} | {interval(x['ci95'])} | {interval(x.get('ci95_seeds'))} | "
            f"{seeds} | {verdict(x)} |")


def interval(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def verdict(x: dict) -> str:
    """"a better" where the CI over questions and the one over seeds and questions both exclude 0 and no seed says
    the opposite (a comparison summarised before `ci95_seeds` existed is read on its `ci95` alone)."""
    for sign, winner, side in ((1, x["a"], "a"), (-1, x["b"], "b")):
        lo, seeds_lo = sign * x["ci95"][(1 - sign) // 2], sign * x.get("ci95_seeds", x["ci95"])[(1 - sign) // 2]
        if lo > 0:  # the interval's end nearer 0, taken toward the winner
            if not all(sign * d > 0 for d in x.get("f1_diff_per_seed", [])):
                return f"{side} ahead on the mean; seeds disagree"
            return f"{winner} better" if seeds_lo > 0 else f"{side} ahead over questions, not over seeds too"
    return "not separated"
