"""`polyprag bench-speed` on the tiny model: every measurement present, the ratios what the numbers say, and
the peak RSS of real `build` and `serve` child processes."""

import json
from dataclasses import replace

import pytest

from polyprag.cli import main
from polyprag.commands import SAMPLE
from polyprag.kb.encode import build_samples
from polyprag.kb.knowledge import BuildConfig
from polyprag.text.augment import augment_documents
from polyprag.text.corpus import load_corpus
from polyprag.lm.models import resolve_dtype


def test_bench_speed_measures_everything_it_promises(tiny_chat_model_dir, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["-q", "bench-speed", "--model", str(tiny_chat_model_dir), "--json", str(out), "--n-docs", "3",
                 "--n-questions", "2", "--batch", "4", "--retrieval-sizes", "50,200", "--max-new-tokens", "3",
                 "--poly-epochs", "1", "--top-layers", "1", "--prag-protocol-epochs", "2", "--paraphrases", "1"]) == 0
    r = json.loads(out.read_text())
    assert set(r["ratios"]) >= {"poly_p50_over_closed_book", "rag_p50_over_closed_book", "prag_p50_over_closed_book",
                                "batched_poly_throughput_over_closed_book", "encode_s_per_doc_poly_over_prag"}
    lat = r["latency"]
    assert r["ratios"]["poly_p50_over_closed_book"] == lat["poly"]["p50_s"] / lat["closed-book-bare"]["p50_s"]
    assert all(v["n"] == 2 and v["p95_s"] >= v["p50_s"] > 0 for v in lat.values())
    assert r["batched"]["questions"] == 4 and r["batched"]["distinct_mixtures"] >= 1
    assert r["encode"]["poly_s_per_doc"] > 0 and r["encode"]["prag_s_per_doc"] > 0
    enc = r["encode"]  # PRAG on its own data recipe too (augment.prag_samples): at least a sample per document
    assert enc["prag_recipe_s_per_doc"] > 0 and enc["prag_recipe_samples"] >= 3
    assert r["ratios"]["encode_s_per_doc_poly_over_prag_recipe"] == pytest.approx(
        enc["poly_s_per_doc"] / enc["prag_recipe_s_per_doc"])
    # and once more at the protocol's epochs: the PRAG whose F1 poly is compared with
    assert enc["prag_protocol_epochs"] == 2 and enc["prag_protocol_s_per_doc"] > 0
    assert r["ratios"]["encode_s_per_doc_poly_over_prag_protocol"] == pytest.approx(
        enc["poly_s_per_doc"] / enc["prag_protocol_s_per_doc"])
    assert set(r["retrieval_p50_ms"]) == {"50", "200"} and r["retrieval"]["200"]["build_s"] > 0
    assert all(20 * 2**20 < r["peak_rss_bytes"][k] < 8 * 2**30 for k in ("build", "serve"))  # a real process
    shown = capsys.readouterr().out
    assert "poly answer p50" in shown and "peak RSS of `serve`" in shown
    serving = resolve_dtype("auto", "cpu")  # serve's default dtype, as the serve child ran it
    assert r["config"]["serve_dtype"] == "auto" and r["peak_rss_dtype"] == {"build": serving, "serve": serving}
    assert f"peak RSS of `serve` (base model in {serving})" in shown
    assert r["encode"]["poly_epochs"] == 1 and r["encode"]["prag_epochs"] == 1 and r["config"]["top_layers"] == 1
    # the build's --paraphrases, so a lever's cost is timed beside the defaults': more samples than without any
    docs = load_corpus(SAMPLE / "docs.jsonl")[:3]
    plain = build_samples(docs, augment_documents(docs, "rules", progress=False, max_qa=BuildConfig().max_qa),
                          replace(BuildConfig(), paraphrases=0))
    assert r["config"]["paraphrases"] == 1 and r["n_samples"] > len(plain)
    assert f"poly (1 epochs, last 1 blocks, 1 paraphrases, {r['n_samples']} samples) vs prag (1), its own data" in \
        out.with_suffix(".md").read_text()  # the console wraps a line this long
    assert "poly vs prag on poly's samples" in shown
    assert "poly vs prag at the protocol's 2 epochs, its own data recipe" in shown


def test_bench_speed_refuses_bad_sizes(tiny_chat_model_dir, capsys):
    assert main(["-q", "bench-speed", "--model", str(tiny_chat_model_dir), "--retrieval-sizes", "10k"]) == 2
    assert "--retrieval-sizes '10k'" in capsys.readouterr().out
