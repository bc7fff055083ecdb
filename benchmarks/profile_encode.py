"""Where encoding time goes: poly's joint training and PRAG's per-document training under torch.profiler.

    .venv/bin/python benchmarks/profile_encode.py --model gemma3-270m --docs 12 --out benchmarks/results/profile-encode-gemma3

Both train on the same samples (a default build's QA pairs, passage samples and contrast questions per sample document),
for one epoch each, so the two profiles cover the same rows. Operators are grouped into what they are part of,
by their name and (for matrix products) their shapes: the output head (vocabulary-wide products and the
softmax), the rest of the model's matrix products, the adapters (poly's mixing einsums), the optimiser, and
everything else. Run it alone: the profile times wall-clock on two cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from polyprag.text.augment import augment_documents
from polyprag.kb.encode import build_samples
from polyprag.commands import SAMPLE
from polyprag.text.corpus import load_corpus
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.baselines.prag import PragAdapters, PragConfig
from polyprag.method.config import TrainConfig


def group(name: str, shapes: list, vocab: int) -> str:
    """The part of a training step an operator belongs to."""
    if "Optimizer" in name or "adamw" in name.lower() or name.startswith("aten::_foreach"):
        return "optimiser"
    if any(vocab in s for s in shapes if s) or "log_softmax" in name or "nll_loss" in name or "cross_entropy" in name:
        return "output head (vocabulary-wide)"
    if "einsum" in name or name == "aten::bmm":  # the model's attention runs in its own kernel, not bmm
        return "adapters (mixing einsums)"
    if name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear"):
        return "model matmuls"
    if "attention" in name or "softmax" in name:
        return "attention"
    return "other"


def summarise(prof, vocab: int, seconds: float) -> dict:
    """Self CPU time per group (s) and the 15 heaviest operators."""
    groups: dict[str, float] = {}
    ops = []
    for e in prof.key_averages(group_by_input_shape=True):
        t = e.self_cpu_time_total / 1e6
        g = group(e.key, [list(s) for s in (e.input_shapes or [])], vocab)
        groups[g] = groups.get(g, 0.0) + t
        ops.append({"op": e.key, "shapes": str(e.input_shapes)[:120], "self_s": round(t, 3), "calls": e.count,
                    "group": g})
    ops.sort(key=lambda o: -o["self_s"])
    return {"wall_s": round(seconds, 2), "groups_s": {k: round(v, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top": ops[:15]}


def run(fn, vocab: int) -> dict:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return summarise(prof, vocab, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--docs", type=int, default=12, help="sample documents (default 12)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    docs = load_corpus(SAMPLE / "docs.jsonl")[:args.docs]
    build = BuildConfig(training=TrainConfig(epochs=1))
    lm = load_model(args.model, dtype="float32")  # float32: what its recorded results ran in
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    augs = augment_documents(docs, build.augmenter, lm, progress=False, max_qa=build.max_qa)
    samples = build_samples(docs, augs, build)
    result = {"model": args.model, "docs": len(docs), "samples": len(samples), "vocab": vocab,
              "threads": torch.get_num_threads()}
    result["poly"] = run(lambda: KnowledgeBase.build(docs, lm, build, progress=False, reuse=augs), vocab)
    with tempfile.TemporaryDirectory() as tmp:
        prag = PragAdapters(load_model(args.model, dtype="float32"), PragConfig(epochs=1), Path(tmp))
        result["prag"] = run(lambda: prag.encode(samples, docs, progress=False), vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile-encode.json").write_text(json.dumps(result, indent=1))
    for name in ("poly", "prag"):
        r = result[name]
        print(f"\n{name}: {r['wall_s']} s wall for {len(samples)} samples × 1 epoch ({len(docs)} documents)")
        for g, t in r["groups_s"].items():
            print(f"  {g:32s} {t:8.2f} s")
        for o in r["top"][:8]:
            print(f"    {o['self_s']:7.2f} s  {o['calls']:6d}×  {o['op']}  {o['shapes']}")


if __name__ == "__main__":
    main()
