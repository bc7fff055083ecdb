"""Answer a finished `polyprag bench` run's questions again with its routing sharpened at answer time.

Each document's weights become normalize(σ(z / T)) (the trained form, T = 1 is the run's own) or softmax(z / T)
of its trained logits z: a lower T mixes fewer adapters per document, with no retraining. This asks whether
the quality of broad routing comes from the mixture used at answer time or from how training used it; each
row also gives the routing entropy (the issue's measure and the within-layer one) of the weights it used.
Answering only, on the same KB, questions, retrieval and decoding.

    .venv/bin/python benchmarks/routing_temperature.py runs/hotpotqa-n100-gemma3-cluster-c3 --temperatures 1,0.5,0.25
"""

from __future__ import annotations

import torch

from polyprag.lm.answer import answer_questions
from polyprag.lm.generate import Routing
from polyprag.kb.plots import routing_stats
from polyprag.method.routing import normalize
from rerun import finished_run, parser, scored, write


def sharpened(z: torch.Tensor, temperature: float, form: str) -> torch.Tensor:
    """(n, G, M) weights of logits z at temperature T, each layer group's row summing to 1."""
    return torch.softmax(z / temperature, -1) if form == "softmax" else normalize(torch.sigmoid(z / temperature))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--temperatures", default="1,0.5,0.25", help="comma-separated T")
    p.add_argument("--forms", default="sigmoid", help="sigmoid (the trained form) and/or softmax")
    args = p.parse_args()
    run = finished_run(args)
    kb, work = run.kb, run.work
    z = kb.routing.logits.detach().float()  # (N, G, M); this script assumes no grown (masked) adapters
    rows = []
    for form in args.forms.split(","):
        for t in map(float, args.temperatures.split(",")):
            every = sharpened(z, t, form)  # (N, G, M)
            weights = torch.stack([every[[kb.row[h.doc_id] for h in hs]].mean(0) if hs else kb.routing.uniform()
                                   for hs in work.hits])  # (Q, G, M)
            timings: list[float] = []
            answers = answer_questions(kb.lm, work.texts, None, run.generation, timings=timings,
                                       routing=Routing(kb.layers, weights))
            row = scored(f"poly ({form}, T={t:g})", run, answers, timings)
            stats = routing_stats(every.numpy())
            row.update(entropy_mean=round(stats["entropy_mean"], 4),
                       entropy_per_layer_mean=round(stats["entropy_per_layer_mean"], 4))
            print(f"  entropy {row['entropy_mean']:.3f} ({row['entropy_per_layer_mean']:.3f} within each layer)")
            rows.append(row)
    write(run, "routing-temperature.json", rows)


if __name__ == "__main__":
    main()
