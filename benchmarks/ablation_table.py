"""One Markdown table from several `polyprag bench` runs: each run's settings, routing and F1 rows.

    .venv/bin/python benchmarks/ablation_table.py runs/hp30-gemma-ref runs/hp30-g-cluster ...

Per run: the levers it was built with (routing init, objective, contrast, alpha, epochs), the routing
report (entropy; centred cosine of documents retrieved by the same question), the last epoch's adapter
cosine, and F1 overall / bridge / comparison of poly, poly-uniform and poly-combine, with the sum
combination (`benchmarks/combine.py`) where it was measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def levers(config: dict) -> str:
    b, t = config["build"], config["build"]["training"]
    parts = [f"init {b.get('routing_init', 'uniform')}", t.get("objective", "nll")]
    if b.get("router", "table") != "table":
        parts.append(f"router {b['router']} (lr {t.get('lr_router', 1e-3):g})")
    if b.get("contrast"):
        parts.append(f"contrast {b['contrast']}")
    parts.append(f"α {b['inventory']['alpha']:g}, {t['epochs']} ep, lr {t['lr_adapters']:g}")
    return ", ".join(parts)


def f1(row: dict | None) -> str:
    if row is None:
        return "–"
    types = row.get("f1_by_type", {})
    return f"{row['f1']:.1f} ({types.get('bridge', float('nan')):.1f} / {types.get('comparison', float('nan')):.1f})"


def line(run: Path) -> str:
    result = json.loads((run / "results.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    summed = run / "combine-sum.json"
    sums = {r["method"].split(" ")[0]: r for r in json.loads(summed.read_text())} if summed.exists() else {}
    routing = result.get("routing") or {}
    manifest = json.loads((run / "kb" / "manifest.json").read_text()) if (run / "kb" / "manifest.json").exists() else {}
    cos = (manifest.get("diagnostics") or [{}])[-1].get("adapter_cosine")
    cells = [run.name, levers(result["config"]),
             f"{routing.get('entropy_mean', float('nan')):.3f}", f"{routing.get('cosine_same_question', float('nan')):.3f}",
             "–" if cos is None else f"{cos:.2f}",
             f1(rows.get("poly")), f1(rows.get("poly-uniform")), f1(rows.get("poly-combine")),
             f1(sums.get("poly")), f1(sums.get("poly-combine"))]
    return "| " + " | ".join(cells) + " |"


def main(runs: list[str]) -> None:
    print("| run | levers | entropy | same-question cosine | adapter cosine | poly | poly-uniform | poly-combine "
          "| poly (sum) | poly-combine (sum) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(line(Path(run)))
    print("\nF1 as overall (bridge / comparison).")


if __name__ == "__main__":
    main(sys.argv[1:])
