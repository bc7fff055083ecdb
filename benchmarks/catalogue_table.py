"""Render the bad-input catalogue's messages as RELIABILITY.md's table.

    POLYPRAG_CATALOGUE=cat.jsonl .venv/bin/pytest -q tests/test_reliability.py
    .venv/bin/python benchmarks/catalogue_table.py cat.jsonl
"""

import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
print("| # | case | command | exit | error shown (KB byte-for-byte unchanged in every case) |")
print("|---|---|---|---|---|")
for i, r in enumerate(rows, 1):
    error = r["error"].split(" Loading weights")[0]  # drop model-loading progress lines
    error = error[error.find("error:"):].replace("|", "\\|")  # argparse prints its usage first
    print(f"| {i} | {r['case']} | `{r['command']}` | {r['exit']} | {error[:300] + ('…' if len(error) > 300 else '')} |")
