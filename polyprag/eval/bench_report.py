"""A benchmark run's report: F1 per question type, storage claims, routing statistics and plots, and the
markdown table of results.md (bench.py runs the methods)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from ..kb import plots
from ..text.datasets import Question
from ..kb.lifecycle import exists, routing_weights
from ..modes import needs
from .metrics import score
from ..text.retrieve import Hit

ADDED = ("poly-z", "poly-grow", "poly-notrain")  # rows on the half-built KB with the other half added


def routing_report(out: Path, questions: list[Question], hits: list[list[Hit]]) -> dict:
    """Plots of the main KB's routing (OUT/kb), and whether documents retrieved together route alike (topic
    clusters)."""
    folder = out / "kb"
    if not exists(folder):
        return {}
    docs, weights = routing_weights(folder)
    first = {}
    for q, hs in zip(questions, hits):  # each document labelled by the first question retrieving it
        for h in hs:
            first.setdefault(h.doc_id, q.id)
    labels = [first.get(d.id, "not retrieved") for d in docs]
    plots.routing_pca(weights, labels, out / "routing_pca.png",
                      title="documents' routing vectors (PCA), coloured by question")
    plots.adapter_usage(weights, out / "adapter_usage.png", title="adapter usage")
    stats = plots.routing_stats(weights)
    row = {d.id: i for i, d in enumerate(docs)}
    groups = [[row[h.doc_id] for h in hs if h.doc_id in row] for hs in hits]
    return {"entropy_mean": stats["entropy_mean"], "entropy_per_layer_mean": stats["entropy_per_layer_mean"],
            "top_adapters": stats["top_adapters"],
            **routing_similarity(weights, groups)}


def routing_similarity(weights: np.ndarray, groups: list[list[int]]) -> dict:
    """Mean cosine between documents' routing vectors (centred: raw weights are all alike) for pairs retrieved
    by the same question vs all other pairs. Within > between: routing clusters by topic (the paper's Fig. 5)."""
    x = weights.reshape(len(weights), -1)
    x = x - x.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    same = np.zeros_like(sim, dtype=bool)
    for g in groups:
        same[np.ix_(g, g)] = True
    off = ~np.eye(len(x), dtype=bool)
    within, between = sim[same & off], sim[~same & off]
    return {"cosine_same_question": round(float(within.mean()), 4) if within.size else None,
            "cosine_other_pairs": round(float(between.mean()), 4) if between.size else None}


def breakdown(questions: list[Question], hits: list[list[Hit]], predictions: list[dict], added: set[str]) -> dict:
    """F1 per question type, and on the questions whose best document is in Poly-z's added half or not."""
    f1 = [score(p["prediction"], p["answers"]).f1 for p in predictions]
    groups: dict[str, list[float]] = {}
    for q, x in zip(questions, f1):
        groups.setdefault(q.qtype or "all", []).append(x)
    out = {"f1_by_type": {t: round(100 * statistics.fmean(v), 3) for t, v in groups.items()}}
    top = [hs[0].doc_id if hs else None for hs in hits]
    for name, inside in (("f1_added_half", True), ("f1_trained_half", False)):
        part = [x for x, t in zip(f1, top) if t is not None and (t in added) == inside]
        out[name] = round(100 * statistics.fmean(part), 3) if part else None
    return out


def storage_claims(rows: list[dict], n_docs: int) -> dict:
    """PRAG's adapter bytes over Poly-PRAG's parametric bytes, in all and per added document; and, from the
    measured sizes (every adapter file and routing row has the same size), the corpus size at which the
    whole of Poly-PRAG is 100× smaller than PRAG's adapters."""
    prag = next((r for r in rows if needs(r["method"]) == "lora"), None)
    poly = next((r for r in rows if needs(r["method"]) == "kb"), None)
    if not (prag and poly):
        return {}
    per_prag, per_poly = prag["storage_bytes_per_doc"], poly["storage_bytes_per_doc"]
    fixed = poly["storage_bytes"] - n_docs * per_poly  # the inventory (+ file headers)
    return {"n_docs": n_docs, "prag_bytes": prag["storage_bytes"], "prag_bytes_per_doc": per_prag,
            "poly_bytes": poly["storage_bytes"], "poly_bytes_per_doc": per_poly, "poly_fixed_bytes": fixed,
            "ratio_total": round(prag["storage_bytes"] / poly["storage_bytes"], 2),
            "ratio_per_doc": round(per_prag / per_poly, 1),
            "docs_for_100x_total": math.ceil(100 * fixed / (per_prag - 100 * per_poly))
            if per_prag > 100 * per_poly else None}


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"# {c['dataset']}: {c['n_questions']} questions, {c['n_docs']} documents ({c['corpus_mode']} corpus)", "",
             f"Model `{c['model']}`, k = {c['k']}, greedy, at most {c['generation']['max_new_tokens']} new tokens."]
    if c.get("corpus_note"):
        lines.append(f"Corpus: {c['corpus_note']}.")
    lines += ["", "| method | EM | F1 | acc | R@k | storage bytes | bytes/doc | encode s/doc | p50 s | p95 s | s/q |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        recall = "-" if r["recall_at_k"] is None else f"{r['recall_at_k']:.2f}"
        encode = f"{r['encode_s_per_doc']:.2f}" if "encode_s_per_doc" in r else "-"
        lines.append(f"| {r['method']} | {r['em']:.1f} | {r['f1']:.1f} | {r['acc']:.1f} | {recall} | "
                     f"{r['storage_bytes']:,} | {r['storage_bytes_per_doc']:,} | {encode} | {r['latency_p50_s']:.2f} | "
                     f"{r['latency_p95_s']:.2f} | {r['seconds_per_question']:.2f} |")
    types = sorted({t for r in result["rows"] for t in r.get("f1_by_type", {})})
    if len(types) > 1 or any(r["method"] in ADDED for r in result["rows"]):
        lines += ["", "F1 per question type, and on the questions whose top document is in the half Poly-z adds "
                  "by routing only / the half its inventory was trained on:", "",
                  "| method | " + " | ".join(types) + " | added half | trained half |",
                  "|---|" + "---|" * (len(types) + 2)]
        for r in result["rows"]:
            cells = [f"{r['f1_by_type'].get(t, 0):.1f}" for t in types]
            halves = ["-" if r.get(k) is None else f"{r[k]:.1f}" for k in ("f1_added_half", "f1_trained_half")]
            lines.append(f"| {r['method']} | " + " | ".join(cells + halves) + " |")
    for r in result["rows"]:
        if r["method"] in ADDED and "add_s" in r:
            ratio = f" ({r['add_s_over_full_build_s']:.2f}× the full build)" if "add_s_over_full_build_s" in r else ""
            lines += ["", f"`{r['method']}`: {r['added_docs']} documents added in {r['add_s']:.0f} s{ratio}, "
                      f"{r['adapters_grown']} adapters grown, {r['bytes_added_per_doc']:,} bytes added per document; "
                      f"{r['old_answers_identical']} of {r['old_questions']} answers to questions retrieving only "
                      "base documents identical before and after the add."]
    for r in result["rows"]:
        if "translator_seconds" in r:
            lines += ["", f"`{r['method']}`: translator ({r['storage_bytes']:,} bytes, lr {r['lr']:g}, {r['epochs']} "
                      f"epoch(s)) trained on PRAG adapters of {r['translator_docs']} paragraphs of "
                      f"{r['translator_questions']} other questions in {r['translator_seconds']:.0f} s (PRAG "
                      f"{r['translator_prag_s_per_doc']:.2f} s/doc + translator {r['translator_translator_s']:.0f} s); "
                      f"final loss {r['translator_history'][-1]['loss']:.3f} (first epoch "
                      f"{r['translator_history'][0]['loss']:.3f}); encode s/doc = reading + translating one document; "
                      f"with the training amortised over these documents {r['encode_s_per_doc_amortised']:.2f}."]
    r = result.get("routing") or {}
    if r.get("cosine_same_question") is not None:
        per_layer = f" ({r['entropy_per_layer_mean']:.3f} within each layer)" if "entropy_per_layer_mean" in r else ""
        lines += ["", f"Routing (main knowledge base): mean normalised entropy {r['entropy_mean']:.3f}{per_layer}; "
                  "centred cosine "
                  f"between documents retrieved by the same question {r['cosine_same_question']:.3f} vs "
                  f"{r['cosine_other_pairs']:.3f} for other pairs; most used adapters {r['top_adapters']}."]
    s = result["storage"]
    if s:
        lines += ["", f"Storage: PRAG's adapters {s['prag_bytes']:,} bytes vs Poly-PRAG's inventory + routing "
                  f"{s['poly_bytes']:,} bytes: PRAG / Poly-PRAG = {s['ratio_total']}× for these {s['n_docs']} "
                  f"documents. Per document {s['prag_bytes_per_doc']:,} vs {s['poly_bytes_per_doc']:,} bytes: "
                  f"{s['ratio_per_doc']}×."]
        if s["docs_for_100x_total"]:
            lines.append(f"From these sizes, the whole of Poly-PRAG is 100× smaller than PRAG's adapters from "
                         f"{s['docs_for_100x_total']:,} documents on.")
    return "\n".join(lines) + "\n"
