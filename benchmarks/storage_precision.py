"""Answer a finished `polyprag bench` run's questions again with its KB's tensors stored at lower precision.

The inventory rounded to bf16 (or int8 with one scale per adapter matrix) and the routing logits to fp16,
then answered as the run answered (same KB, questions, retrieval and decoding): whether smaller storage
costs F1 (the storage goal: within 1 point of fp32).

    .venv/bin/python benchmarks/storage_precision.py runs/hp100-g-cluster-c3 --precisions bf16,int8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from polyprag.bench import breakdown, workload
from polyprag.datasets import load_dataset
from polyprag.evaluate import prediction, score_row
from polyprag.generate import GenerationConfig
from polyprag.kb import KnowledgeBase


def rounded(t: torch.Tensor, precision: str) -> torch.Tensor:
    """t as it would come back from storage at `precision` (fp32 again, for the fp32 model)."""
    if precision == "fp32":
        return t
    if precision in ("bf16", "fp16"):
        return t.to(torch.bfloat16 if precision == "bf16" else torch.float16).float()
    flat = t.reshape(t.shape[0], -1) if t.dim() > 2 else t.reshape(1, -1)  # int8: one scale per adapter matrix
    scale = flat.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127
    return (torch.round(flat / scale).clamp(-127, 127) * scale).reshape(t.shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a bench run folder (config.json, kb/)")
    p.add_argument("--precisions", default="fp32,bf16,int8", help="inventory precisions (routing in fp16 unless fp32)")
    p.add_argument("--modes", default="poly,poly-combine")
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    questions, corpus = load_dataset(config["dataset"], args.data_dir, config["n"])
    work = workload(questions, corpus, config["corpus_mode"], config["k"])
    kb = KnowledgeBase.load(run / "kb")
    generation = GenerationConfig(**config["generation"])
    masters = {id(p): p.detach().clone() for l in kb.layers for p in l.named_adapters().values()}
    logits = kb.routing.logits.detach().clone()
    rows = []
    for precision in args.precisions.split(","):
        with torch.no_grad():
            for l in kb.layers:
                for p in l.named_adapters().values():
                    p.copy_(rounded(masters[id(p)], precision))
            kb.routing.logits.copy_(rounded(logits, "fp32" if precision == "fp32" else "fp16"))
        for mode in args.modes.split(","):
            timings: list[float] = []
            answers = kb.answer(work.texts, mode, config["k"], generation, timings=timings, hits=work.hits)
            row = score_row(f"{mode} ({precision})", work.questions, answers, work.retrieved, timings, sum(timings))
            row.update(breakdown(work, [prediction(q, a, r) for q, a, r in zip(work.questions, answers, work.retrieved)],
                                 added=set()))
            rows.append(row)
            print(f"{row['method']}: F1 {row['f1']:.1f}, EM {row['em']:.1f}", flush=True)
    out = run / "storage-precision.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
