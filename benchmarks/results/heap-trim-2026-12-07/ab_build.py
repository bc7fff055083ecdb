"""A/B: a build at HEAD with the per-batch heap trim on (TRIM=1) or replaced by a no-op (TRIM=0)."""
import os, sys
import polyprag.method.train as t
from polyprag.cli import main
if os.environ.get("TRIM") == "0":
    t.trim_heap = lambda: None
sys.exit(main(sys.argv[1:]))
