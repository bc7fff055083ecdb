"""The bad-input catalogue (RELIABILITY.md): every case is refused through the CLI with a clear error that
names the value, where it came from and the fix, and the knowledge base — its folder, its history and
anything beside it — is byte-for-byte what it was."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from serving import build_kb

from polyprag import cli
from polyprag.kb.lifecycle import checksums

PACKAGE = Path(cli.__file__).parent


@pytest.fixture(scope="module")
def master(tiny_chat_model_dir, tmp_path_factory) -> Path:
    return build_kb(tiny_chat_model_dir, tmp_path_factory.mktemp("reliability") / "kb")


@pytest.fixture
def kb(master, tmp_path) -> Path:
    """A private copy in tmp_path/store/kb; inputs go to tmp_path/in."""
    folder = tmp_path / "store" / "kb"
    shutil.copytree(master, folder)
    (tmp_path / "in").mkdir()
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Every file's sha256, but the folder's empty lock file (atomic.folder_lock), which holds no data."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not (p.name.endswith(".lock") and not p.stat().st_size)}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    cli.console.width = 10_000  # one line per message: rich would wrap it
    try:
        code = cli.main(["-q", *argv])
    except SystemExit as e:  # argparse refuses bad flags itself
        code = e.code
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def doc(id_="new", text="Orrin Pell was a painter born in 1901.", **more) -> str:
    return json.dumps({"id": id_, "title": "T", "text": text, **more})


def rewrite_manifest(kb: Path, **changes) -> None:
    m = json.loads((kb / "manifest.json").read_text())
    (kb / "manifest.json").write_text(json.dumps({**m, **changes}))
    (kb / "manifest.sha256").unlink(missing_ok=True)  # as a KB saved before manifests were sealed


def drop_checksums(kb: Path, _=None) -> None:
    m = json.loads((kb / "manifest.json").read_text())
    del m["files"]
    (kb / "manifest.json").write_text(json.dumps(m))
    (kb / "manifest.sha256").unlink(missing_ok=True)  # as a KB saved before manifests were sealed


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def nan_routing(kb: Path, _=None) -> None:
    """A KB written by a faulty tool: NaN routing, checksums updated to match, so only the NaN check can stop it."""
    logits = load_file(kb / "routing.safetensors")["logits"]
    logits[0, 0, 0] = float("nan")
    save_file({"logits": logits}, kb / "routing.safetensors")
    rewrite_manifest(kb, files=checksums(kb))


ADD = ["add", "{kb}"]
ASK = ["ask", "Who finished Marlow Bridge?", "--kb", "{kb}"]

# (case, CLI arguments, how the KB or the input is spoiled first, phrases the error must contain)
CASES = [
    ("empty corpus file", ADD + ["{in}/empty.jsonl"], lambda kb, d: write(d / "empty.jsonl", ""),
     ["empty.jsonl", "no documents"]),
    ("only blank lines", ADD + ["{in}/blank.jsonl"], lambda kb, d: write(d / "blank.jsonl", "\n  \n\n"),
     ["blank.jsonl", "no documents"]),
    ("empty document text", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc(text="")),
     ["c.jsonl:1", "'text' is empty", "give the document some text"]),
    ("whitespace document text", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc(text=" \n\t ")),
     ["c.jsonl:1", "'text' is empty"]),
    ("duplicate ids in the input", ADD + ["{in}/c.jsonl"],
     lambda kb, d: write(d / "c.jsonl", doc("a") + "\n" + doc("a") + "\n"), ["c.jsonl:2", "duplicate id 'a'", "unique"]),
    ("id already in the KB", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc("marlow")),
     ["'marlow'", "already in the knowledge base", "remove them first"]),
    ("id with a path separator", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc("../etc/x")),
     ["c.jsonl:1", "'../etc/x'", "path separator", "replace it"]),
    ("id with a control character", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc("a\u0007b")),
     ["c.jsonl:1", "control characters", "remove them"]),
    ("empty id", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc("  ")),
     ["c.jsonl:1", "'id' is empty", "non-empty id"]),
    ("non-UTF-8 bytes", ADD + ["{in}/c.jsonl"],
     lambda kb, d: write(d / "c.jsonl", doc().encode()[:-10] + b"\xff\xfe" + doc().encode()[-10:]),
     ["c.jsonl", "UTF-8"]),
    ("a 5 MB single document", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc(text="word " * 1_000_000)),
     ["'new'", "5,000,000 characters", "--chunk-words"]),
    ("truncated JSONL", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc("a") + "\n" + doc("b")[:25]),
     ["c.jsonl:2", "truncated"]),
    ("text of the wrong type", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc(text=123)),
     ["c.jsonl:1", "'text' must be a string", "int 123"]),
    ("id of the wrong type", ADD + ["{in}/c.jsonl"], lambda kb, d: write(d / "c.jsonl", doc(id_=["x"])),
     ["c.jsonl:1", "'id' must be a string or integer"]),
    ("missing text field", ADD + ["{in}/c.jsonl"],
     lambda kb, d: write(d / "c.jsonl", json.dumps({"id": "x", "body": "y"})), ["c.jsonl:1", "missing field 'text'"]),
    ("a JSON object where a list belongs", ADD + ["{in}/c.json"],
     lambda kb, d: write(d / "c.json", json.dumps({"id": "x", "text": "y"})), ["c.json", "list"]),
    ("corpus path that does not exist", ADD + ["{in}/nope.jsonl"], lambda kb, d: None, ["nope.jsonl", "does not exist"]),
    ("add with --epochs 0", ADD + ["{in}/c.jsonl", "--epochs", "0"], lambda kb, d: write(d / "c.jsonl", doc()),
     ["--epochs 0", "at least 1 epoch"]),
    ("missing tensor file", ASK, lambda kb, d: (kb / "inventory.safetensors").unlink(),
     ["inventory.safetensors is missing", "polyprag rollback"]),
    ("truncated tensor file", ASK,
     lambda kb, d: write(kb / "routing.safetensors", (kb / "routing.safetensors").read_bytes()[:100]),
     ["routing.safetensors", "sha256", "altered or damaged", "rollback"]),
    ("altered tensor file", ASK, lambda kb, d: flip_byte(kb / "inventory.safetensors"),
     ["inventory.safetensors", "sha256", "altered or damaged"]),
    ("altered document text", ASK,
     lambda kb, d: write(kb / "docs.jsonl", (kb / "docs.jsonl").read_text().replace("1862", "1863")),
     ["docs.jsonl", "sha256", "altered or damaged"]),
    ("checksums removed from the manifest", ASK, drop_checksums, ["lists no file checksums", "rebuild"]),
    ("truncated manifest", ASK, lambda kb, d: write(kb / "manifest.json", (kb / "manifest.json").read_text()[:50]),
     ["manifest.json is not valid UTF-8 JSON", "Roll back"]),
    ("manifest from a newer format version", ASK, lambda kb, d: rewrite_manifest(kb, format_version=99),
     ["format version 99", "upgrade polyprag"]),
    ("NaN in routing", ASK, nan_routing, ["NaN or infinite values in routing.safetensors", "roll back"]),
    ("not a knowledge base", ["ask", "Who?", "--kb", "{in}"], lambda kb, d: None,
     ["no manifest.json", "polyprag build"]),
    ("KB for another base model", ASK + ["--model", "{other_model}"], lambda kb, d: None,
     ["was built for base model", "fingerprint", "rebuild the KB for this model"]),
    ("unknown model spec", ASK + ["--model", "no-such-model"], lambda kb, d: None,
     ["'no-such-model' resolves to nothing", "Fix: pass a folder with config.json"]),
    ("k = 0", ASK + ["--k", "0"], lambda kb, d: None, ["k = 0 is out of range", "1 to 100"]),
    ("huge k", ASK + ["--k", "1000000000"], lambda kb, d: None, ["k = 1000000000 is out of range"]),
    ("empty question", ["ask", "   ", "--kb", "{kb}"], lambda kb, d: None, ["question is empty"]),
    ("100 kB question", ["ask", "why " * 25_000, "--kb", "{kb}"], lambda kb, d: None,
     ["100,000 characters", "shorter question"]),
    ("unknown mode", ASK + ["--mode", "poly-magic"], lambda kb, d: None, ["--mode", "'poly-magic'", "choose from"]),
    ("remove an unknown id", ["remove", "{kb}", "ghost"], lambda kb, d: None, ["'ghost'", "not in the knowledge base"]),
    ("remove every document", ["remove", "{kb}", "marlow", "velmark", "glass"], lambda kb, d: None,
     ["empty knowledge base", "keep at least one"]),
    ("rollback to a version that never was", ["rollback", "{kb}", "7"], lambda kb, d: None,
     ["no version 7", "available: 1"]),
    ("build over a KB with --adapters 0", ["build", "{in}/c.jsonl", "--out", "{kb}", "--adapters", "0"],
     lambda kb, d: write(d / "c.jsonl", doc()), ["--adapters"]),
]


def test_the_catalogue_has_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,argv,spoil,phrases", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_the_kb_is_unchanged(name, argv, spoil, phrases, kb, tmp_path,
                                                               tiny_base_model_dir, tiny_chat_model_dir, capsys):
    spoil(kb, tmp_path / "in")
    store = tmp_path / "store"
    before = snapshot(store)
    fill = {"kb": str(kb), "in": str(tmp_path / "in"), "other_model": str(tiny_base_model_dir)}
    args = [a.format(**fill) if "{" in a else a for a in argv]
    if "--model" not in args and args[0] in ("ask", "add", "remove"):
        args += ["--model", str(tiny_chat_model_dir)]  # the KB names a temp folder; say it explicitly
    code, message = run_cli(args, capsys)
    assert code == 2, f"{name}: exit {code}: {message}"
    for phrase in phrases:
        assert phrase in message, f"{name}: {phrase!r} not in: {message}"
    assert "Traceback" not in message
    assert snapshot(store) == before, f"{name}: the knowledge base changed"
    if os.environ.get("POLYPRAG_CATALOGUE"):  # RELIABILITY.md's table: benchmarks/catalogue_table.py renders it
        shown = message.replace(str(tmp_path), "…").replace(str(tiny_chat_model_dir), "MODEL")
        shown = shown.replace(str(tiny_base_model_dir), "OTHER-MODEL")
        with open(os.environ["POLYPRAG_CATALOGUE"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": name, "command": argv[0], "exit": code, "error": shown}) + "\n")


def test_an_intact_kb_still_answers_after_the_refusals(kb, tiny_chat_model_dir, capsys):
    """The checks refuse damage, not health: the same command on the untouched copy succeeds."""
    code, message = run_cli(["ask", "Who finished Marlow Bridge?", "--kb", str(kb), "--model", str(tiny_chat_model_dir)],
                            capsys)
    assert code == 0, message


def test_no_pickle_anywhere_in_the_package():
    """Knowledge bases, indexes, checkpoints and caches are safetensors, .npy and JSON: nothing unpickles."""
    pattern = re.compile(r"import (c?pickle|joblib|dill|shelve)\b|pickle\.\w+\(|torch\.load\(|allow_pickle=True")
    found = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}" for p in PACKAGE.rglob("*.py")
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []
    assert len(list(PACKAGE.rglob("*.py"))) > 10  # the walk saw the package


def test_saving_refuses_nan_and_leaves_the_kb_as_it_was(kb, tiny_chat_model_dir):
    from polyprag.errors import InputError
    from polyprag.kb.knowledge import KnowledgeBase
    from polyprag.lm.models import load_model

    loaded = KnowledgeBase.load(kb, load_model(str(tiny_chat_model_dir)))
    before = snapshot(kb.parent)
    with torch.no_grad():
        loaded.routing.logits[1, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite values in routing.*training diverged"):
        loaded.save(kb)
    assert snapshot(kb.parent) == before
