"""Answer a finished `polyprag bench` run's questions again with its KB's tensors stored at lower precision.

The inventory rounded to bf16 (or int8 with one scale per adapter matrix) and the routing logits to fp16,
then answered as the run answered (same KB, questions, retrieval and decoding): whether smaller storage
costs F1 (the storage goal: within 1 point of fp32).

    .venv/bin/python benchmarks/storage_precision.py runs/hp100-g-cluster-c3 --precisions bf16,int8
"""

from __future__ import annotations

import torch

from rerun import finished_run, parser, scored, write


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
    p = parser(__doc__)
    p.add_argument("--precisions", default="fp32,bf16,int8", help="inventory precisions (routing in fp16 unless fp32)")
    p.add_argument("--modes", default="poly,poly-combine")
    args = p.parse_args()
    run = finished_run(args.run, args.data_dir)
    kb = run.kb
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
            answers = kb.answer(run.work.texts, mode, run.config["k"], run.generation, timings=timings,
                                hits=run.work.hits)
            rows.append(scored(f"{mode} ({precision})", run, answers, timings))
    write(run, "storage-precision.json", rows)


if __name__ == "__main__":
    main()
