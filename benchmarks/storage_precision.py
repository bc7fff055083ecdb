"""Answer a finished `polyprag bench` run's questions again with its KB's tensors stored at lower precision.

The inventory rounded to bf16 or int8 as a KB stores it (polyprag.kb.storage) and the routing logits to fp16,
then answered as the run answered (same KB, questions, retrieval and decoding): whether smaller storage
costs F1 (the storage goal: within 1 point of fp32).

    .venv/bin/python benchmarks/storage_precision.py runs/hp100-g-cluster-c3 --precisions bf16,int8
"""

from __future__ import annotations

import torch

from rerun import finished_run, parser, scored, write

from polyprag.kb.storage import rounded, routing_dtype


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--precisions", default="fp32,bf16,int8", help="inventory precisions (routing in fp16 unless fp32)")
    p.add_argument("--modes", default="poly,poly-combine")
    args = p.parse_args()
    run = finished_run(args)
    kb = run.kb
    if kb.manifest.build.storage != "fp32":
        p.error(f"{args.run}: its KB is stored in {kb.manifest.build.storage}, so its fp32 row would not be fp32; "
                "measure a run built with --storage fp32 (or one made before bf16 storage).")
    masters = {id(p): p.detach().clone() for l in kb.layers for p in l.named_adapters().values()}
    logits = kb.routing.logits.detach().clone()
    rows = []
    for precision in args.precisions.split(","):
        with torch.no_grad():
            for l in kb.layers:
                for p in l.named_adapters().values():
                    p.copy_(rounded(masters[id(p)], precision))
            kb.routing.logits.copy_(logits.to(routing_dtype(precision)))
        for mode in args.modes.split(","):
            timings: list[float] = []
            answers = kb.answer(run.work.texts, mode, run.config["k"], run.generation, timings=timings,
                                hits=run.work.hits)
            rows.append(scored(f"{mode} ({precision})", run, answers, timings))
    write(run, "storage-precision.json", rows)


if __name__ == "__main__":
    main()
