"""Experiment: a default build with glibc's malloc_trim between batches (every K), nothing else changed."""
import ctypes, os, sys, time
import polyprag.method.train as t
from polyprag.cli import main
K = int(os.environ.get("TRIM_EVERY", "1"))
libc = ctypes.CDLL("libc.so.6")
orig, n, spent = t._backward, [0], [0.0]
def wrapped(run, rows):
    n[0] += 1
    if K and n[0] % K == 0:
        s = time.perf_counter(); libc.malloc_trim(0); spent[0] += time.perf_counter() - s
    return orig(run, rows)
t._backward = wrapped
rc = main(sys.argv[1:])
print(f"trims every {K}: {n[0]} batches, {spent[0]:.2f} s in malloc_trim", flush=True)
sys.exit(rc)
