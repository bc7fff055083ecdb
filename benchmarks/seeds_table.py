"""Mean and spread over seeds: `polyprag bench` runs of one configuration that differ only in `--seed`.

    .venv/bin/python benchmarks/seeds_table.py runs/hotpotqa-n100-smollm2-cluster-c3 runs/...-seed1 runs/...-seed2

Checks that the runs' configurations differ in nothing but the seed (and the methods run; a setting only one
run recorded, because it was added to polyprag in between, is not compared), then prints per
method the F1 of each seed, their mean and sample standard deviation, and the same for the routing entropy.
A method appears when every run has it. `--json OUT` also writes the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from polyprag.settings import differences, with_defaults  # the resume check's comparison of two run configs


def _config_without_seed(config: dict) -> dict:
    config = json.loads(json.dumps(config))  # a deep copy
    config["build"]["training"].pop("seed", None)
    for key in ("methods", "seed", "command"):  # the command names the seed and the output folder
        config.pop(key, None)
    return config


def load(runs: list[Path]) -> list[dict]:
    results = [json.loads((r / "results.json").read_text()) for r in runs]
    base = _config_without_seed(results[0]["config"])
    for run, result in zip(runs[1:], results[1:]):
        config = _config_without_seed(result["config"])
        # each side takes the other's value for a setting it did not record (added to polyprag in between)
        diff = differences("config", with_defaults(base, config), with_defaults(config, base))
        if diff:
            raise SystemExit(f"{run}: its configuration differs from {runs[0]}'s in more than the seed "
                             f"({'; '.join(diff)}); compare runs of one configuration.")
    return results


def table(runs: list[Path], results: list[dict]) -> dict:
    seeds = [r["config"]["build"]["training"]["seed"] for r in results]
    rows = [{row["method"]: row for row in r["rows"]} for r in results]
    methods = [m for m in rows[0] if all(m in r for r in rows)]
    out = {"runs": [str(r) for r in runs], "seeds": seeds, "methods": {}}
    for m in methods:
        f1 = [r[m]["f1"] for r in rows]
        out["methods"][m] = {"f1": f1, "mean": statistics.mean(f1), "sd": statistics.stdev(f1) if len(f1) > 1 else 0.0}
    entropy = [(r.get("routing") or {}).get("entropy_mean") for r in results]
    if all(e is not None for e in entropy):
        out["entropy"] = {"values": entropy, "mean": statistics.mean(entropy),
                          "sd": statistics.stdev(entropy) if len(entropy) > 1 else 0.0}
    return out


def markdown(t: dict) -> str:
    head = "| method | " + " | ".join(f"seed {s}" for s in t["seeds"]) + " | mean ± sd |"
    lines = [head, "|---|" + "---|" * (len(t["seeds"]) + 1)]
    for m, v in t["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{x:.1f}" for x in v["f1"]) + f" | **{v['mean']:.1f} ± {v['sd']:.1f}** |")
    if "entropy" in t:
        e = t["entropy"]
        lines.append("| routing entropy | " + " | ".join(f"{x:.3f}" for x in e["values"])
                     + f" | {e['mean']:.3f} ± {e['sd']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--json", type=Path, help="also write the table here")
    args = p.parse_args()
    t = table(args.runs, load(args.runs))
    print(markdown(t))
    print("\nF1 in %; sd: the sample standard deviation over the seeds.")
    if args.json:
        args.json.write_text(json.dumps(t, indent=1))


if __name__ == "__main__":
    main()
