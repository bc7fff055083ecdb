"""The table of benchmarks/dtype_agreement.sh: per corpus and mode, identical answers, F1 in each dtype and the
bfloat16 − float32 difference with its paired bootstrap 95% CI over questions; then each `eval`'s peak RSS.
    .venv/bin/python benchmarks/dtype_table.py runs/dtype-agreement"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyprag.eval.compare import bootstrap_ci, per_question_f1

from same_predictions import predictions, same  # a sibling script: benchmarks/ is on sys.path when run


def rows(folder: Path) -> list[str]:
    wide, narrow = (json.loads((folder / f"{d}.json").read_text()) for d in ("float32", "bfloat16"))
    counts = same(predictions(folder / "float32.json"), predictions(folder / "bfloat16.json"))
    lines = []
    for mode, c in counts.items():
        f32, bf16 = per_question_f1([wide], mode), per_question_f1([narrow], mode)  # (Q,), (Q,)
        lines.append(f"| {folder.name} | {mode} | {c['identical']}/{c['questions']} | {f32.mean():.1f} | "
                     f"{bf16.mean():.1f} | {bf16.mean() - f32.mean():+.1f} {_ci(bf16 - f32)} |")
    return lines


def _ci(diff) -> str:
    lo, hi = bootstrap_ci(diff)
    return f"[{lo:+.1f}, {hi:+.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    args = ap.parse_args()
    folders = sorted(p.parent for p in args.root.glob("*/bfloat16.json") if (p.parent / "float32.json").exists())
    print("| corpus | mode | identical answers | F1 float32 | F1 bfloat16 | bfloat16 − float32 [95% CI] |")
    print("|---|---|---|---|---|---|")
    for folder in folders:
        print("\n".join(rows(folder)))
    print("\n| corpus | peak RSS of `eval`, float32 | bfloat16 |\n|---|---|---|")
    for folder in folders:
        kib = [int((folder / f"{d}.peak-kib").read_text().split()[-1]) for d in ("float32", "bfloat16")]
        print(f"| {folder.name} | {kib[0] / 1024:,.0f} MiB | {kib[1] / 1024:,.0f} MiB |")


if __name__ == "__main__":
    main()
