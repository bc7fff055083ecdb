"""`polyprag bench` end to end on the tiny model: every method, the JSON/Markdown/PNG reports, resume."""

import json
import shutil
from pathlib import Path
from dataclasses import replace

import pytest

import numpy as np

from polyprag.eval.bench import METHODS, workload
from polyprag.eval.bench_report import routing_similarity, storage_claims
from polyprag.cli import main
from polyprag.lm.models import resolve_dtype
from polyprag.text.datasets import Question
from polyprag.text.corpus import Document

FAST = ["--n", "3", "--epochs", "1", "--max-new-tokens", "3", "--adapters", "4", "--rank", "2"]


def _bench(model, out, *extra):
    return main(["-q", "bench", "--dataset", "sample", "--model", str(model), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def run(tiny_chat_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    assert _bench(tiny_chat_model_dir, out, "--methods", "all", "--routing", "fine,coarse") == 0
    return out


@pytest.fixture
def rerun(run, tmp_path):
    """A copy of the run for the tests that rerun into it: each test sees the run as built, in any order."""
    return shutil.copytree(run, tmp_path / "run")


def test_every_method_has_a_row_with_quality_storage_and_time(run):
    result = json.loads((run / "results.json").read_text())
    methods = [r["method"] for r in result["rows"]]
    assert methods == [*METHODS, "poly[routing=fine]", "poly[routing=coarse]"]
    for r in result["rows"]:
        for key in ("em", "f1", "recall_at_k", "storage_bytes", "storage_bytes_per_doc", "latency_p50_s",
                    "latency_p95_s", "seconds_per_question", "cpu_per_wall"):
            assert key in r, (r["method"], key)
        assert r["latency_p95_s"] >= r["latency_p50_s"] > 0 and 0 < r["cpu_per_wall"] < 64  # process CPU s per wall s
        assert len(result["predictions"][r["method"]]) == 3
    by = {r["method"]: r for r in result["rows"]}
    assert by["closed-book"]["storage_bytes"] == 0 and by["prag"]["storage_bytes"] > 0
    assert all(r["machine"]["cores"] >= 1 and "bf16_native" in r["machine"] for r in by.values())  # times say where
    assert by["prag"]["encode_s_per_doc"] > 0 and by["poly"]["encode_s_per_doc"] > 0
    assert by["poly[routing=coarse]"]["storage_bytes_per_doc"] < by["poly[routing=fine]"]["storage_bytes_per_doc"]
    assert by["poly-z"]["added_docs"] == result["config"]["n_docs"] // 2
    grow, z = by["poly-grow"], by["poly-z"]
    assert grow["added_docs"] == z["added_docs"] and z["adapters_grown"] == 0 and grow["adapters_grown"] >= 1
    assert grow["adapters"] == 4 + grow["adapters_grown"] and z["adapters"] == 4
    assert grow["bytes_added_per_doc"] > z["bytes_added_per_doc"] > 0 and grow["f1_added_half"] is not None
    for row in (grow, z):  # adding never changes an answer that reads only base documents
        assert row["old_answers_identical"] == row["old_questions"] >= 1, row
        assert 0 < row["add_s_over_full_build_s"] and row["add_s"] > 0
    assert result["config"]["n_docs"] == (run / "kb" / "docs.jsonl").read_text().count("\n")
    assert set(by["poly"]["f1_by_type"]) == {"all"} and by["poly-z"]["f1_added_half"] is not None
    assert result["storage"]["ratio_per_doc"] == round(by["prag"]["storage_bytes_per_doc"] / by["poly"]["storage_bytes_per_doc"], 1)


def test_reports_and_plots_are_written(run):
    md = (run / "results.md").read_text()
    assert "| prag-tuned |" in md and "poly[routing=coarse]" in md and "Storage:" in md and "Routing" in md
    for png in ("f1.png", "routing_pca.png", "adapter_usage.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_resumes_and_redoes_only_missing_methods(rerun, tiny_chat_model_dir):
    kept = (rerun / "methods" / "prag.json").stat().st_mtime_ns
    (rerun / "methods" / "rag.json").unlink()
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "all", "--routing", "fine,coarse") == 0
    assert (rerun / "methods" / "rag.json").exists()
    assert (rerun / "methods" / "prag.json").stat().st_mtime_ns == kept


def test_a_rerun_with_other_settings_is_refused(rerun, tiny_chat_model_dir, capsys):
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag", "--k", "2") == 2
    assert "other settings (k: 3 in the run, 2 now)" in " ".join(capsys.readouterr().out.split())


def test_a_rerun_on_other_questions_or_documents_is_refused(rerun, tiny_chat_model_dir, capsys):
    config = json.loads((rerun / "config.json").read_text())
    data = config["data"]  # the fingerprint of the questions and documents the run read
    (rerun / "config.json").write_text(json.dumps({**config, "data": "0" * 16}))
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag") == 2
    assert "a benchmark run of other questions or documents" in " ".join(capsys.readouterr().out.split())
    config.pop("data")  # a run from before the fingerprint: resumed unchecked, and fingerprinted from now on
    (rerun / "config.json").write_text(json.dumps(config))
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag") == 0
    assert json.loads((rerun / "config.json").read_text())["data"] == data


def test_rows_no_build_setting_reaches_are_copied_from_an_earlier_run(run, tiny_chat_model_dir, tmp_path, capsys):
    out = tmp_path / "new-defaults"  # poly's build changed (--max-qa 2): readers and PRAG train and answer as before
    assert _bench(tiny_chat_model_dir, out, "--methods", "rag,prag,poly", "--max-qa", "2", "--rows-from", str(run)) == 0
    for name in ("rag", "prag"):
        mine, theirs = (json.loads((d / "methods" / f"{name}.json").read_text()) for d in (out, run))
        assert mine["row"].pop("copied_from") == str(run) and mine == theirs
    poly = json.loads((out / "methods" / "poly.json").read_text())["row"]
    assert "copied_from" not in poly and poly["code"]  # trained here, on this build
    capsys.readouterr()
    other = tmp_path / "other-k"  # another retrieval depth: its rows are not this run's
    assert _bench(tiny_chat_model_dir, other, "--methods", "rag", "--k", "2", "--rows-from", str(run)) == 2
    shown = " ".join(capsys.readouterr().out.split())
    assert f"--rows-from {run}: that run differs from this one beyond poly's build (k: 3 in the run, 2 now)" in shown
    assert not (other / "methods" / "rag.json").exists()
    assert _bench(tiny_chat_model_dir, tmp_path / "x", "--methods", "rag", "--rows-from", str(tmp_path)) == 2
    assert "no config.json there" in " ".join(capsys.readouterr().out.split())


def test_a_record_with_fewer_seeds_lends_what_it_has_and_a_missing_one_is_named(tmp_path):
    from polyprag.errors import InputError
    from polyprag.eval.reuse import seed_folder

    (tmp_path / "record" / "seed-0").mkdir(parents=True)
    assert seed_folder(tmp_path / "record", 0) == tmp_path / "record" / "seed-0"
    assert seed_folder(tmp_path / "record", 1) is None and seed_folder(None, 0) is None  # seed 1 runs every row
    with pytest.raises(InputError, match="--rows-from .*nowhere: no such folder"):
        seed_folder(tmp_path / "nowhere", 0)


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(rerun, tiny_chat_model_dir, capsys):
    config = json.loads((rerun / "config.json").read_text())
    assert (config.pop("device"), config.pop("dtype")) == ("cpu", resolve_dtype("auto", "cpu"))  # bench's default
    config["build"].pop("combine_strength")  # a nested setting newer than the run, too
    (rerun / "config.json").write_text(json.dumps(config))
    kept = (rerun / "methods" / "rag.json").stat().st_mtime_ns
    # it counts as the value runs had before it existed (1), not as today's default (0.5)
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag") == 2
    assert "build.combine_strength: 1.0 in the run, 0.5 now" in " ".join(capsys.readouterr().out.split())
    # a run without a dtype ran in float32 (the default before auto)
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag", "--combine-strength", "1", "--dtype", "float32") == 0
    assert (rerun / "methods" / "rag.json").stat().st_mtime_ns == kept
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag", "--combine-strength", "1", "--dtype", "bfloat16") == 2
    assert "(dtype: 'float32' in the run, 'bfloat16' now)" in " ".join(capsys.readouterr().out.split())
    # A run made before bf16 storage stored its KBs in fp32: resumed only as such, and the message says so
    config["build"].pop("storage")
    (rerun / "config.json").write_text(json.dumps(config))
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag", "--combine-strength", "1", "--dtype", "float32") == 2
    assert "build.storage: 'fp32' in the run, 'bf16' now" in " ".join(capsys.readouterr().out.split())
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "rag", "--combine-strength", "1", "--storage", "fp32",
                  "--dtype", "float32") == 0


def test_a_rerun_asking_fewer_methods_still_reports_every_finished_row(rerun, tiny_chat_model_dir):
    before = [r["method"] for r in json.loads((rerun / "results.json").read_text())["rows"]]
    kept = (rerun / "methods" / "rag.json").stat().st_mtime_ns
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "closed-book,rag") == 0
    result = json.loads((rerun / "results.json").read_text())
    rows = [r["method"] for r in result["rows"]]
    # the asked rows first, then every other finished row of the folder: nothing the run holds drops out
    assert rows[:2] == ["closed-book", "rag"] and sorted(rows) == sorted(before) and len(before) > 2
    assert result["config"]["methods"] == rows and "| prag |" in (rerun / "results.md").read_text()
    assert (rerun / "methods" / "rag.json").stat().st_mtime_ns == kept


def test_closed_book_bare_asks_as_the_parametric_methods_do(rerun, tiny_chat_model_dir, monkeypatch):
    import polyprag.readers as readers
    seen = []
    real = readers.answer_questions
    monkeypatch.setattr(readers, "answer_questions", lambda *a, **kw: seen.append(kw["shots"]) or real(*a, **kw))
    assert _bench(tiny_chat_model_dir, rerun, "--methods", "all,closed-book-bare", "--routing", "fine,coarse") == 0
    assert seen == [False]  # the ten were done before: only the bare reader ran, without examples
    rows = json.loads((rerun / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == [*METHODS, "closed-book-bare", "poly[routing=fine]", "poly[routing=coarse]"]
    assert rows[len(METHODS)]["storage_bytes"] == 0


@pytest.mark.parametrize("flags, message", [(["--methods", "rag,telepathy"], "telepathy"),
                                            (["--adapters", "4,x"], "--adapters"),
                                            (["--routing", "fine,medium"], "--routing"),
                                            (["--add-epochs", "0"], "--add-epochs 0"),
                                            (["--add-lr", "0"], "--add-lr 0.0 must be > 0")])
def test_bad_flags_are_named(flags, message, tiny_chat_model_dir, tmp_path, capsys):
    args = ["-q", "bench", "--dataset", "sample", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path / "o"), *flags]
    assert main(args) == 2
    assert message in capsys.readouterr().out


def test_per_question_mode_encodes_only_retrieved_paragraphs():
    corpus = [Document("a", "Ada Feld", "Ada Feld built Marlow Bridge."), Document("b", "Velmark", "Velmark mills."),
              Document("c", "Glass harp", "A glass harp is an instrument.")]
    questions = [Question("q", "Who built Marlow Bridge?", ["Ada Feld"], ["a"])]
    assert [d.id for d in workload(questions, corpus, "per-question", 1).docs] == ["a"]
    assert len(workload(questions, corpus, "closed", 1).docs) == 3


def test_storage_ratios_and_the_corpus_size_for_100x():
    assert storage_claims([{"method": "rag", "storage_bytes": 0, "storage_bytes_per_doc": 0}], 10) == {}
    rows = [{"method": "prag", "storage_bytes": 10_000, "storage_bytes_per_doc": 1000},
            {"method": "poly", "storage_bytes": 550, "storage_bytes_per_doc": 5}]  # 500 inventory + 10 × 5
    s = storage_claims(rows, 10)
    assert (s["ratio_total"], s["ratio_per_doc"], s["poly_fixed_bytes"]) == (18.18, 200.0, 500)
    assert s["docs_for_100x_total"] == 100  # 100 × 1000 = 100 × (500 + 100 × 5)
    rows[1]["storage_bytes_per_doc"] = 20  # a row costing more than 1/100 of an adapter: never 100×
    assert storage_claims(rows, 10)["docs_for_100x_total"] is None


def test_routing_similarity_sees_documents_of_one_question_cluster():
    rng = np.random.default_rng(0)
    centres = rng.random((2, 3, 4))
    weights = np.stack([centres[i // 3] + 0.01 * rng.random((3, 4)) for i in range(6)])  # docs 0-2 / 3-5
    sim = routing_similarity(weights, [[0, 1, 2], [3, 4, 5]])
    assert sim["cosine_same_question"] > 0.9 > -0.5 > sim["cosine_other_pairs"]
    assert routing_similarity(weights, [[0, 3]])["cosine_same_question"] < 0  # a mixed pair is far apart


def test_a_bench_with_routing_heads_runs_its_controls_and_reports(tiny_chat_model_dir, tmp_path):
    out = tmp_path / "run"
    methods = "poly,poly-shuffled,poly-uniform,poly-combine"
    assert _bench(tiny_chat_model_dir, out, "--methods", methods, "--heads", "2") == 0
    rows = {r["method"] for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(methods.split(",")) <= rows
    assert json.loads((out / "kb" / "manifest.json").read_text())["inventory"]["heads"] == 2
    assert (out / "routing_pca.png").exists() and (out / "adapter_usage.png").exists()


def test_poly_notrain_routes_the_added_half_without_training(tiny_chat_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _bench(tiny_chat_model_dir, out, "--methods", "poly-z,poly-notrain", "--routing-init", "cluster") == 0
    by = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    free, trained = by["poly-notrain"], by["poly-z"]
    assert free["added_docs"] == trained["added_docs"] and free["train_tokens_per_doc"] == 0
    assert trained["train_tokens_per_doc"] > 0 and free["add_s"] < trained["add_s"]
    assert free["old_answers_identical"] == free["old_questions"] >= 1
    manifest = json.loads((out / "kb-notrain" / "manifest.json").read_text())
    assert manifest["additions"][-1]["epochs"] == 0
    assert _bench(tiny_chat_model_dir, tmp_path / "o2", "--methods", "poly-notrain", "--routing-init", "uniform") == 2
    assert "--routing-init cluster" in " ".join(capsys.readouterr().out.split())


def test_dyprag_rows_train_a_translator_on_other_questions_and_reuse_it(tiny_chat_model_dir, tmp_path):
    from polyprag.eval.bench import Bench, BenchConfig
    from polyprag.text.corpus import load_corpus
    from polyprag.text.datasets import load_questions
    from polyprag.baselines.dyprag import DypragConfig
    from polyprag.baselines.prag import PragConfig
    from polyprag.kb.knowledge import BuildConfig
    from polyprag.lm.generate import GenerationConfig
    from polyprag.commands import SAMPLE

    questions, corpus = load_questions(SAMPLE / "questions.jsonl"), load_corpus(SAMPLE / "docs.jsonl")
    config = BenchConfig(dataset="sample", n=2, methods=("dyprag", "dyprag-combine", "dyprag-tuned"), corpus_mode="per-question", k=1,
                         build=BuildConfig(max_qa=1, contrast=0), dyprag=DypragConfig(lr=1e-2),
                         prag=PragConfig(lr=1e-3, epochs=2), generation=GenerationConfig(max_new_tokens=3))
    held = questions[10:13]
    result = Bench(str(tiny_chat_model_dir), config, tmp_path / "run", progress=False).run(
        questions[:2], corpus, held_out=(held, corpus))
    by = {r["method"]: r for r in result["rows"]}
    # the API's default dtype "auto" is recorded as what the run computed in
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dtype"] == resolve_dtype("auto", "cpu")
    evaluated = {h for p in result["predictions"]["dyprag"] for h in p["retrieved"]}
    trained = json.loads((tmp_path / "run" / "dyprag" / "translator-lr0.01-e1" / "train.json").read_text())
    tuned = json.loads((tmp_path / "run" / "dyprag" / "translator-lr0.001-e2" / "train.json").read_text())
    assert trained["questions"] == 3 and trained["docs"] >= 1 and len(trained["history"]) == 1
    # the LoRAs it learns from are PRAG's published ones (DyPRAG's recipe), whatever the run's own prag settings
    assert (trained["prag_lr"], trained["prag_epochs"]) == (3e-4, 1) and by["dyprag"]["translator_prag_epochs"] == 1
    assert len(tuned["history"]) == 2 and by["dyprag-tuned"]["lr"] == 1e-3
    prag_tally = json.loads((tmp_path / "run" / "dyprag" / "prag" / "timing.json").read_text())
    assert prag_tally["docs"] == trained["docs"]  # PRAG's adapters of the training paragraphs: trained once, shared
    assert by["dyprag"]["storage_bytes"] > 0 and by["dyprag"]["storage_bytes_per_doc"] == 0
    assert by["dyprag"]["translator_docs"] == trained["docs"] and by["dyprag"]["encode_s_per_doc"] > 0
    assert len(result["predictions"]["dyprag-combine"]) == 2 and evaluated
    assert "translator" in (tmp_path / "run" / "results.md").read_text()
    saved = (tmp_path / "run" / "dyprag" / "translator-lr0.01-e1" / "translator.safetensors").stat().st_mtime_ns
    for f in (tmp_path / "run" / "methods").glob("dyprag*.json"):
        f.unlink()
    Bench(str(tiny_chat_model_dir), config, tmp_path / "run", progress=False).run(questions[:2], corpus,
                                                                                  held_out=(held, corpus))
    assert (tmp_path / "run" / "dyprag" / "translator-lr0.01-e1" / "translator.safetensors").stat().st_mtime_ns == saved
    # without a dyprag method the held-out set is not read: the same folder resumes with other methods
    Bench(str(tiny_chat_model_dir), replace(config, methods=("closed-book-bare",)), tmp_path / "run",
          progress=False).run(questions[:2], corpus)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["held_out"]  # still the one it was trained on


def test_dyprag_without_other_questions_says_what_it_needs(tiny_chat_model_dir, tmp_path, capsys):
    assert _bench(tiny_chat_model_dir, tmp_path / "run", "--methods", "dyprag") == 2
    assert "questions beyond the evaluated ones" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_seeds_give_mean_sd_and_paired_bootstrap_comparisons(tiny_chat_model_dir, tmp_path):
    out = tmp_path / "seeds"
    methods = ("closed-book-bare,rag,prag,prag-shared,prag-shuffled,poly,poly-combine,poly-shuffled,"
               "poly-shuffled-combine,poly-uniform-combine")
    assert _bench(tiny_chat_model_dir, out, "--methods", methods, "--seeds", "0,1") == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["seeds"] == [0, 1] and result["config"]["split"] == "test"
    by = {r["method"]: r for r in result["rows"]}
    assert set(by) == set(methods.split(",")) and all(len(r["f1_per_seed"]) == 2 for r in by.values())
    seed_runs = [json.loads((out / f"seed-{s}" / "config.json").read_text()) for s in (0, 1)]
    assert [c["build"]["training"]["seed"] for c in seed_runs] == [0, 1] == [c["prag"]["seed"] for c in seed_runs]
    rag = [json.loads((out / f"seed-{s}" / "methods" / "rag.json").read_text()) for s in (0, 1)]
    assert rag[0] == rag[1]  # a reader is run once and copied
    pairs = {(c["a"], c["b"]): c for c in result["comparisons"]}
    assert {("poly", "poly-shuffled"), ("poly", "prag"), ("poly", "prag-shared"), ("poly-combine", "rag"),
            ("prag", "prag-shuffled"), ("poly-combine", "poly-shuffled-combine"),
            ("poly-combine", "poly-uniform-combine")} <= set(pairs)
    for c in pairs.values():
        lo, hi = c["ci95"]
        assert lo <= c["f1_diff"] <= hi and c["seeds"] == [0, 1] and c["n_questions"] == 3
        assert c["ci95_seeds"][0] <= c["f1_diff"] <= c["ci95_seeds"][1]
    assert by["prag"]["samples"] == "prag" and by["prag-shared"]["samples"] == "poly"
    assert "| poly | poly-shuffled |" in (out / "results.md").read_text()
    assert all(len(r["commits"]) == 1 for r in by.values())  # every row names the code it ran (one version here)


def test_the_code_a_row_ran_is_named_by_commit_and_by_the_package_tree():
    import subprocess

    from polyprag.eval.evaluate import code_version

    root = Path(__file__).resolve().parents[1]
    try:
        tree = "+".join(subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD:polyprag", "HEAD:pyproject.toml"],
                                       capture_output=True, text=True, check=True).stdout.split())
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: rows name the installed version only")
    code = code_version()
    assert code["tree"] == tree and len(code["commit"]) == 40 and isinstance(code["dirty"], bool)


def test_rows_whose_seeds_ran_different_code_are_flagged():
    from polyprag.eval.compare import markdown, summarise

    def run(seed: int, commit: str, tree: str | None = None) -> dict:
        preds = [{"prediction": "x", "answers": ["x"]}, {"prediction": "y", "answers": ["z"]}]
        row = {"method": "poly", "f1": 50.0, "em": 50.0, "recall_at_k": None, "f1_by_type": {},
               "code": {"polyprag": "0.1.0", "commit": commit, "tree": tree, "dirty": False}}
        config = {"seed": seed, "dataset": "d", "n_questions": 2, "model": "m", "k": 3,
                  "generation": {"max_new_tokens": 32}}
        return {"config": config, "rows": [row], "predictions": {"poly": preds}}

    same = summarise([run(0, "abc"), run(1, "abc")], [0, 1])
    assert same["rows"][0]["commits"] == ["abc"] and "different code" not in markdown(same)
    mixed = summarise([run(0, "abc"), run(1, "def")], [0, 1])
    assert mixed["rows"][0]["commits"] == ["abc", "def"]
    assert "rows whose seeds ran different package code: poly" in markdown(mixed)
    docs_only = summarise([run(0, "abc", "t1"), run(1, "def", "t1")], [0, 1])  # commits that left polyprag/ alone
    assert docs_only["rows"][0]["commits"] == ["abc", "def"] and "different package code" not in markdown(docs_only)
    assert "different package code: poly" in markdown(summarise([run(0, "abc", "t1"), run(1, "def", "t2")], [0, 1]))
    timed = [run(0, "abc"), run(1, "abc")]
    for r, seconds in zip(timed, (2.0, 4.0)):
        r["rows"][0]["encode_s_per_doc"] = seconds
    assert summarise(timed, [0, 1])["rows"][0]["encode_s_per_doc"] == 3.0  # every seed trains: their mean
    for r, ratio in zip(timed, (1.9, 0.4)):  # seed 1 was paused or shared the cores
        r["rows"][0]["cpu_per_wall"] = ratio
    assert summarise(timed, [0, 1])["rows"][0]["cpu_per_wall_min"] == 0.4  # the seed whose times are suspect
    for r, native in zip(timed, (True, False)):  # seed 1 ran on a CPU without native bf16
        r["rows"][0]["machine"] = {"cpu": "EPYC", "cores": 2, "bf16_native": native, "threads": 2}
    apart = summarise(timed, [0, 1])
    assert len(apart["rows"][0]["machines"]) == 2
    assert "timed on different machines (their times are not comparable): poly" in markdown(apart)
    timed[1]["rows"][0]["machine"] = dict(timed[0]["rows"][0]["machine"])
    assert "Machines: EPYC, 2 cores, native bf16, 2 threads." in markdown(summarise(timed, [0, 1]))


def test_comparisons_refuse_runs_of_other_questions():
    """Pairing is by position: seeds or methods that answered other questions (or in another order) must stop it."""
    import pytest
    from polyprag.eval.compare import compare

    def run(seed: int, ids: list[str]) -> dict:
        preds = [{"id": i, "prediction": "x", "answers": ["x"]} for i in ids]
        return {"config": {"seed": seed}, "predictions": {"poly": preds, "rag": preds}}

    assert compare([run(0, ["q1", "q2"]), run(1, ["q1", "q2"])], "poly", "rag")["n_questions"] == 2
    with pytest.raises(ValueError, match="poly: the seeds' runs answered different questions"):
        compare([run(0, ["q1", "q2"]), run(1, ["q2", "q1"])], "poly", "rag")
    other = run(0, ["q1", "q2"])
    other["predictions"]["rag"] = [{**p, "id": "q9"} for p in other["predictions"]["rag"]]
    with pytest.raises(ValueError, match="poly and rag answered different questions"):
        compare([other], "poly", "rag")


def test_shuffled_hits_never_give_a_question_its_own_documents():
    from polyprag.text.retrieve import shuffled_hits
    from polyprag.text.retrieve import Hit

    hits = [[Hit("a", 3.0), Hit("b", 2.0)], [Hit("c", 1.0), Hit("a", 0.5)], []]
    ids = ["a", "b", "c", "d", "e"]
    shuffled = shuffled_hits(hits, ids, seed=0)
    assert shuffled == shuffled_hits(hits, ids, seed=0)  # seeded
    for own, new in zip(hits, shuffled):
        assert len(new) == len(own) and not {h.doc_id for h in new} & {h.doc_id for h in own}
        assert len({h.doc_id for h in new}) == len(new) and [h.score for h in new] == [h.score for h in own]


def test_a_difference_is_rounded_once_for_its_report():
    # F1 0, 61.5 (4 of 9 words) and 100 against 0 three times: a − b is 53.846, which two-decimal storage would
    # print as 53.9 (53.846 -> 53.85 -> 53.9)
    from polyprag.eval.compare import compare
    gold = ["a b c d e f g h i j"]
    answers = {"a": ["a", "a b c d e", "a b c d e f g h i j"], "b": ["z", "z", "z"]}
    run = {"config": {"seed": 0}, "predictions": {m: [{"id": i, "prediction": p, "answers": gold}
                                                       for i, p in enumerate(ps)] for m, ps in answers.items()}}
    c = compare([run], "a", "b")
    assert f"{c['f1_diff']:.1f}" == "53.8" and f"{c['f1_diff_per_seed'][0]:.1f}" == "53.8"


def test_a_seed_and_a_mean_over_seeds_are_rounded_once_for_their_report():
    # 3 of 10 gold words: F1 46.154, which a row stored to 2 decimals (as bench stored them before 2026-12-07) printed
    # as 46.1 (46.154 -> 46.15 -> 46.1); the summary reads the seeds' F1 from their predictions, not their rows
    from polyprag.eval.compare import summarise
    from polyprag.eval.evaluate import _pct
    from polyprag.eval.metrics import score

    pred = {"id": 0, "prediction": "b c d", "answers": ["b c d e f g h i j k"]}
    runs = [{"config": {"seed": s}, "rows": [{"method": "m", "f1": 46.15, "em": 0.0, "recall_at_k": None}],
             "predictions": {"m": [pred]}} for s in (0, 1)]
    row = summarise(runs, [0, 1])["rows"][0]
    assert f"{row['f1']:.1f}" == "46.2" and [f"{x:.1f}" for x in row["f1_per_seed"]] == ["46.2", "46.2"]
    assert f"{_pct(score(pred['prediction'], pred['answers']))['f1']:.1f}" == "46.2"  # a seed's own row


def test_a_verdict_needs_the_interval_and_every_seed():
    from polyprag.eval.compare import verdict

    assert verdict({"a": "poly", "b": "prag", "ci95": [0.5, 3.0], "f1_diff_per_seed": [2.0, 1.0, 3.0]}) == "poly better"
    assert "seeds disagree" in verdict({"a": "poly", "b": "prag", "ci95": [0.5, 3.0], "f1_diff_per_seed": [5, 4, -6]})
    assert verdict({"a": "poly", "b": "prag", "ci95": [-1.0, 3.0], "f1_diff_per_seed": [2.0]}) == "not separated"
    assert verdict({"a": "poly", "b": "prag", "ci95": [-3.0, -1.0], "f1_diff_per_seed": [-2.0]}) == "prag better"
    # separated over questions, but another draw of the trainings could close the gap: not "better"
    assert verdict({"a": "poly", "b": "prag", "ci95": [0.5, 3.0], "ci95_seeds": [-1.0, 4.0],
                    "f1_diff_per_seed": [2.0, 1.0, 3.0]}) == "a ahead over questions, not over seeds too"
    assert verdict({"a": "poly", "b": "prag", "ci95": [-3.0, -1.0], "ci95_seeds": [-4.0, -0.5],
                    "f1_diff_per_seed": [-2.0, -1.0]}) == "prag better"


def test_the_interval_over_seeds_widens_with_the_seeds_spread_and_pairs_the_questions():
    import numpy as np

    from polyprag.eval.compare import bootstrap_ci, bootstrap_ci_seeds

    rng = np.random.default_rng(1)
    questions = rng.uniform(0, 100, 200)  # (Q,) each question's difficulty, shared by both methods
    steady = np.stack([questions + 5] * 3)  # (3, Q): a method 5 above b, the same every seed
    b = np.stack([questions] * 3)
    lo, hi = bootstrap_ci_seeds(steady, b)
    assert (lo, hi) == pytest.approx((5.0, 5.0))  # paired questions: their spread cancels, no seeds spread
    shaky = questions + np.array([[-10.0], [5.0], [20.0]])  # (3, Q): mean +5, seeds at -10 / +5 / +20
    lo, hi = bootstrap_ci_seeds(shaky, b)
    assert lo < -5 and hi > 15 and lo < 5 < hi  # the seeds' spread, which the questions-only interval hides
    assert bootstrap_ci_seeds(shaky, b) == (lo, hi)  # seeded: a rerun of the table gives the same interval
    assert bootstrap_ci(shaky.mean(0) - b.mean(0)) == pytest.approx((5.0, 5.0))
    one = bootstrap_ci_seeds(shaky[:1], b[:1])  # one seed each: nothing to resample but the questions
    assert one == pytest.approx((-10.0, -10.0))
    # two methods answering with the same seed's training (poly and poly-shuffled: one KB per seed): what the seed
    # does moves both alike and cancels in a − b, so the seeds are drawn paired and add no spread here
    seed_effect = np.array([[-10.0], [5.0], [20.0]])
    assert bootstrap_ci_seeds(questions + seed_effect + 5, questions + seed_effect) == pytest.approx((5.0, 5.0))
    with pytest.raises(ValueError, match="cannot be paired"):
        bootstrap_ci_seeds(steady, b[:, :10])


def test_a_second_bench_on_the_same_out_folder_is_refused_at_once(tmp_path, capsys):
    """Two benches in one folder would train into the same seed folders and spoil each other's timings."""
    from polyprag import atomic

    from polyprag.eval.evaluate import code_version

    out = tmp_path / "run"
    code_version.cache_clear()
    with atomic.folder_lock(out):  # another bench holds the folder
        assert main(["-q", "bench", "--dataset", "sample", "--model", "no-such-model", "--out", str(out), "--n", "2",
                     "--methods", "closed-book-bare"]) == 2
    said = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"--out {out}: another polyprag bench is writing there" in said and "another --out" in said
    assert not out.exists()  # nothing written, no model loaded
    assert code_version.cache_info().currsize == 1  # the code was named as the process started, before any row


def test_a_prag_row_resumes_from_its_saved_chunks_on_a_machine_without_its_adapters(tiny_chat_model_dir, tmp_path,
                                                                                   monkeypatch):
    """PRAG's rows outlast a machine: stopped after two chunks of one question, resumed in a folder holding only what
    `results_copy.sh collect` commits (no adapters, no caches), the rerun answers only the rest and gives the answers
    and sizes of a run that trained every adapter at once (one chunk of 10)."""
    import polyprag.eval.partial as partial
    from polyprag.baselines.prag import PragAdapters

    methods = ["--methods", "prag,prag-shuffled"]
    assert _bench(tiny_chat_model_dir, tmp_path / "whole", *methods) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())

    answer, calls = PragAdapters.answer, []

    def stops_at_the_third_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # prag and prag-shuffled answer each chunk in turn: this is prag's third
            raise KeyboardInterrupt  # the machine taken back mid-row
        return answer(self, *args, **kwargs)

    monkeypatch.setattr(partial, "CHUNK", 1)
    monkeypatch.setattr(PragAdapters, "answer", stops_at_the_third_chunk)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _bench(tiny_chat_model_dir, stopped, *methods)
    saved = json.loads((stopped / "partial" / "prag.json").read_text())
    assert len(saved["ids"]) == 2 and saved["clock"]["encode"] > 0 and not (stopped / "methods" / "prag.json").exists()
    # the rows sharing the adapters answered each chunk together: one training of a document serves both
    assert json.loads((stopped / "partial" / "prag-shuffled.json").read_text())["ids"] == saved["ids"]
    out = tmp_path / "committed"  # what collect copies, then restore puts back on another machine
    for f in stopped.rglob("*.json"):
        rel = f.relative_to(stopped)
        if rel.name == "config.json" or rel.parts[0] in ("methods", "partial"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out / rel)
    monkeypatch.setattr(PragAdapters, "answer", answer)
    assert _bench(tiny_chat_model_dir, out, *methods) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["predictions"] == whole["predictions"]
    rows = [{r["method"]: r for r in result["rows"]} for result in (whole, resumed)]
    for method in ("prag", "prag-shuffled"):
        assert rows[1][method]["f1"] == rows[0][method]["f1"]
        assert rows[1][method]["storage_bytes"] == rows[0][method]["storage_bytes"] > 0
        assert rows[1][method]["encode_s_per_doc"] > 0 and rows[1][method]["cpu_per_wall"] > 0
    # the row's answering time counts the earlier process's two questions too
    assert rows[1]["prag"]["seconds_per_question"] * 3 >= saved["clock"]["wall"] - saved["clock"]["encode"]
    assert not (out / "partial" / "prag.json").exists()  # the row holds its answers now
    tally = json.loads(next((out / "partial").glob("prag-prag-*.tally.json")).read_text())
    assert tally["docs"] > resumed["config"]["n_docs"]  # the lost adapters were trained again, and counted


def test_answers_saved_by_another_version_of_the_code_are_not_resumed(tmp_path):
    from polyprag.errors import InputError
    from polyprag.eval.partial import Partial
    from polyprag.lm.answer import Answer

    part = Partial.load(tmp_path / "prag.json", ["q1", "q2"], "tree-a")
    part.add(["q1"], [Answer("Q?", "x", "A: x")], [0.5], wall=2.0, cpu=3.0, encode=1.0)
    again = Partial.load(tmp_path / "prag.json", ["q1", "q2"], "tree-a")
    assert again.answers == [Answer("Q?", "x", "A: x")] and again.chunks(["q1", "q2"]) == [[1]]
    assert again.earlier == {"wall": 2.0, "cpu": 3.0, "encode": 1.0}
    with pytest.raises(InputError, match="another version of polyprag"):
        Partial.load(tmp_path / "prag.json", ["q1", "q2"], "tree-b")
    with pytest.raises(InputError, match="other questions"):
        Partial.load(tmp_path / "prag.json", ["q2", "q1"], "tree-a")
