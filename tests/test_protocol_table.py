"""benchmarks/protocol_table.py and benchmarks/levers_table.py: tables from the seed folders that have landed."""

import json
from pathlib import Path

import pytest

from polyprag.eval.metrics import score

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def scripts(bench_script):
    return bench_script("protocol_table"), bench_script("levers_table")


def _seed(run: Path, seed: int, answers: dict[str, list[str]], **row_fields) -> None:
    folder = run / f"seed-{seed}"
    (folder / "methods").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "hotpotqa-cf", "model": "m", "split": "dev"}))
    gold = ["Orla Pell", "1871", "Velmark", "yes"]
    for method, predicted in answers.items():
        preds = [{"prediction": p, "answers": [g], "qtype": "bridge" if i < 2 else "comparison"}
                 for i, (p, g) in enumerate(zip(predicted, gold))]
        f1 = 100 * sum(score(p["prediction"], p["answers"]).f1 for p in preds) / len(preds)  # as bench scores a row
        row = {"method": method, "f1": f1, "em": 0.0, "recall_at_k": None, "f1_by_type": {}, "encode_s_per_doc": 2.5,
               **row_fields}
        (folder / "methods" / f"{method}.json").write_text(json.dumps({"row": row, "predictions": preds}))


def test_own_minus_shuffled_per_lever_with_its_interval_and_types(scripts, tmp_path):
    protocol_table, levers_table = scripts
    run = tmp_path / "levers-dev-hotpotqa-cf-n30-smollm2-format-uniform"
    _seed(run, 0, {"poly": ["Orla Pell", "1871", "Velmark", "no"], "poly-shuffled": ["x", "y", "Velmark", "no"]})
    _seed(run, 1, {"poly": ["Orla Pell", "1871", "z", "yes"], "poly-shuffled": ["x", "1871", "z", "yes"]})
    s = protocol_table.summarise(run)
    assert s["rows"]["poly"]["f1_per_seed"] == [75.0, 75.0] and s["rows"]["poly-shuffled"]["f1_per_seed"] == [25.0, 50.0]
    row = levers_table.lever_row(run)
    assert row["lever"] == "format-uniform" and row["dataset"] == "hotpotqa-cf" and row["n"] == 30 and row["seeds"] == 2
    assert row["own_minus_shuffled"] == pytest.approx(37.5) and row["ci95"][0] <= 37.5 <= row["ci95"][1]
    assert row["own_minus_shuffled_by_type"] == {"bridge": pytest.approx(75.0), "comparison": pytest.approx(0.0)}
    assert row["encode_s_per_doc"] == 2.5 and row["poly_uniform"] is None
    assert "| hotpotqa-cf | format-uniform | 2 | 75.0 | 37.5 | +37.5 [" in levers_table.markdown([row])


def test_the_user_path_agrees_with_bench_only_where_the_interval_holds_zero(bench_script, tmp_path):
    user_path = bench_script("user_path")

    gold = [{"id": f"q{i}", "answers": ["Orla Pell"]} for i in range(40)]
    same = [{**g, "prediction": "Orla Pell" if i % 2 else "x"} for i, g in enumerate(gold)]
    worse = [{**g, "prediction": "x"} for g in gold]
    for seed in (0, 1):
        (tmp_path / "bench" / f"seed-{seed}" / "methods").mkdir(parents=True)
        for mode in ("poly", "poly-combine"):
            (tmp_path / "bench" / f"seed-{seed}" / "methods" / f"{mode}.json").write_text(
                json.dumps({"row": {}, "predictions": same}))
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "eval.json").write_text(json.dumps({"predictions": {"poly": same, "poly-combine": worse}}))
    report = user_path.check(tmp_path / "user", tmp_path / "bench")
    assert report["poly"]["agree"] and report["poly"]["diff"] == 0 and report["poly"]["bench_seeds"] == 2
    assert not report["poly-combine"]["agree"] and report["poly-combine"]["diff"] == -50.0


def test_the_levers_rule_sends_on_only_a_higher_score_whose_own_knowledge_does_not_fall(scripts):
    _, levers_table = scripts

    def row(lever, dataset, poly, combine, own):
        return {"lever": lever, "dataset": dataset, "poly": poly, "poly_combine": combine,
                "own_minus_shuffled": own, "seeds": 3}

    table = [row("defaults", "briefs", 10, 60, 5), row("defaults", "hotpotqa", 30, 30, 10),
             row("better", "briefs", 12, 62, 6), row("better", "hotpotqa", 30, 30, 10),
             row("forgets", "briefs", 20, 70, 4), row("forgets", "hotpotqa", 30, 30, 10),
             row("worse", "briefs", 9, 60, 9), row("worse", "hotpotqa", 30, 30, 12),
             row("half-run", "briefs", 50, 90, 20), row("half-run", "hotpotqa", None, None, None)]
    got = {v["lever"]: v for v in levers_table.verdicts(table)}
    assert set(got) == {"better", "forgets", "worse"}  # a lever missing a dataset is not judged
    assert got["better"]["passes"] and got["better"]["gain"] == 1.0
    assert not got["forgets"]["passes"] and got["forgets"]["own_fell_on"] == ["briefs"]
    assert not got["worse"]["passes"] and got["worse"]["gain"] == -0.25
    assert levers_table.verdicts([row("better", "briefs", 1, 1, 1)]) == []  # no defaults: no rule to apply
    assert "| better | 33.5 | +1.0 | - | briefs 3, hotpotqa 3 | yes |" in levers_table.verdict_markdown(
        list(got.values()), 32.5)
    on_bf16 = table + [row("better+more", "briefs", 13, 63, 6), row("better+more", "hotpotqa", 30, 30, 11)]
    got = {v["lever"]: v for v in levers_table.verdicts(on_bf16, reference="better")}
    assert set(got) == {"better+more"} and got["better+more"]["passes"]  # against its reference, compositions only
    assert got["better+more"]["gain"] == 0.5


def test_collect_and_restore_round_trip_a_runs_rows_and_leave_its_kb_behind(tmp_path):
    import shutil
    import subprocess

    root = tmp_path / "repo"  # the scripts work from the folder above their own: a copy keeps the checkout clean
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    run = root / "runs" / "levers-dev-briefs-n30-smollm2-qa6"
    _seed(run, 0, {"poly": ["Orla Pell", "1871", "x", "yes"]})
    (run / "seed-0" / "kb").mkdir()
    (run / "seed-0" / "kb" / "inventory.safetensors").write_bytes(b"weights")
    script = root / "benchmarks" / "levers_dev.sh"
    assert subprocess.run(["bash", str(script), "collect", "qa6"], capture_output=True).returncode == 0
    kept = root / "benchmarks" / "results" / "levers-dev-n30" / run.name / "seed-0"
    assert sorted(p.name for p in kept.rglob("*") if p.is_file()) == ["config.json", "poly.json"]  # no KB
    shutil.rmtree(root / "runs")
    assert subprocess.run(["bash", str(script), "restore", "qa6"], capture_output=True).returncode == 0
    assert (run / "seed-0" / "methods" / "poly.json").read_text() == (kept / "methods" / "poly.json").read_text()
    bad = subprocess.run(["bash", str(script), "collect", "nosuch"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown lever nosuch" in bad.stderr


def test_prag_dev_rule_scores_only_variants_complete_on_the_published_seeds(bench_script, tmp_path):
    prag_table = bench_script("prag_table")

    right, half, wrong = ["Orla Pell", "1871", "Velmark", "yes"], ["Orla Pell", "1871", "x", "no"], ["x"] * 4
    for corpus, seeds in (("briefs", (0, 1)), ("hotpotqa", (0,))):
        for seed in seeds:
            _seed(tmp_path / f"prag-dev-{corpus}-n30-smollm2-published", seed, {"prag": wrong, "prag-combine": half},
                  lr=3e-4, epochs=1)
            _seed(tmp_path / f"prag-dev-{corpus}-n30-smollm2-lr1e-3-e1", seed,
                  {"prag-tuned": half, "prag-tuned-combine": right}, lr=1e-3, epochs=1)
    _seed(tmp_path / "prag-dev-briefs-n30-smollm2-lr3e-3-e2", 0, {"prag-tuned": right, "prag-tuned-combine": right},
          lr=3e-3, epochs=2)
    table = prag_table.cells(tmp_path)
    score = prag_table.scores(table)
    assert score == {"published": pytest.approx(25.0), "lr1e-3-e1": pytest.approx(75.0)}  # lr3e-3-e2: one seed, one corpus
    text = prag_table.markdown(table, score)
    assert "| lr3e-3-e2 | 100.0 / 100.0 (1) | - | incomplete |" in text
    assert text.endswith("lr1e-3-e1 (75.00, published 25.00)")
    assert prag_table.flags(table, score) == "--prag-lr 0.001 --prag-epochs 1"  # what the protocol's prag rows train with
    _seed(tmp_path / "prag-dev-hotpotqa-n30-smollm2-lr1e-3-e1", 1, {"prag-tuned": half, "prag-tuned-combine": right},
          lr=1e-3, epochs=1)  # the choice on more seeds than its runner-up: not a choice yet
    table = prag_table.cells(tmp_path)
    with pytest.raises(SystemExit, match="unequal seeds"):
        prag_table.flags(table, prag_table.scores(table))


def test_the_goals_are_read_at_three_seeds_and_pending_before(scripts, tmp_path):
    protocol_table, _ = scripts
    right, wrong = ["Orla Pell", "1871", "Velmark", "yes"], ["x", "y", "z", "no"]
    half = ["Orla Pell", "1871", "z", "no"]
    answers = {"poly": right, "poly-shuffled": wrong, "poly-combine": half, "rag": half, "prag": half,
               "prag-shared": ["Orla Pell", "y", "z", "no"], "poly-shuffled-combine": half, "rag-bare": wrong}
    real = tmp_path / "protocol-hotpotqa-test-n100-m"
    for seed in (0, 1, 2):
        _seed(real, seed, answers)
        (real / f"seed-{seed}" / "config.json").write_text(json.dumps({"dataset": "hotpotqa", "model": "m"}))
    cf = tmp_path / "protocol-hotpotqa-cf-test-n100-m"
    for seed in (0, 1):
        _seed(cf, seed, answers)
    got = {g["goal"]: g for g in protocol_table.goals(protocol_table.summarise(real))}
    assert got["poly − poly-shuffled"]["met"] is True and got["poly − poly-shuffled"]["value"].startswith("+100.0")
    assert got["poly-combine − the stronger rag (rag)"]["met"] is False  # level: below +2 and the interval holds 0
    assert got["poly ≥ the stronger PRAG (prag)"]["met"] is True
    own_share = got["of which the documents' own: poly-combine − poly-shuffled-combine"]
    assert own_share["met"] is False and own_share["value"].startswith("+0.0")  # another document's routing: as good
    assert not any("× rag" in g for g in got)  # a goal of the counterfactual data only
    pending = protocol_table.goals(protocol_table.summarise(cf))
    assert [g["met"] for g in pending] == [None] * 5 and pending[4]["value"].startswith("2.00 ×")
    _seed(cf, 2, {**answers, "poly": half})
    done = {g["goal"]: g["met"] for g in protocol_table.goals(protocol_table.summarise(cf))}
    assert done["poly ≥ 0.9 × the stronger rag (rag)"] is True  # 83.3 of 50.0 on average over the three seeds
    summaries = [{**s, "goals": protocol_table.goals(s)} for s in map(protocol_table.summarise, (real, cf))]
    assert "| hotpotqa, m | poly-combine − the stronger rag (rag) | ≥ +2, both CIs above 0 | +0.0 [+0.0, +0.0], seeds too [+0.0, +0.0] " \
           "(3) | **no** |" in \
        protocol_table.markdown(summaries)


def test_the_table_names_its_code_shows_exact_match_on_counterfactual_data_and_flags_disagreement(scripts, tmp_path):
    protocol_table, _ = scripts
    answers = {"poly": ["Orla Pell", "1871", "z", "no"], "rag": ["Orla Pell", "y", "z", "no"]}
    code = {"polyprag": "0.1", "commit": "abc", "dirty": False}
    real, cf = tmp_path / "protocol-hotpotqa-test-n100-m", tmp_path / "protocol-hotpotqa-cf-test-n100-m"
    _seed(real, 0, answers, code=code)
    (real / "seed-0" / "config.json").write_text(json.dumps({"dataset": "hotpotqa", "model": "m", "build": {"epochs": 2}}))
    _seed(cf, 0, answers, code=code)
    _seed(cf, 1, answers, code={**code, "commit": "def"})
    agree = [protocol_table.summarise(real)]
    shown = protocol_table.markdown([{**s, "goals": []} for s in agree])
    assert "Code: abc." in shown and "Settings differ" not in shown and "EM" not in shown.split("F1 mean")[0]
    both = [{**protocol_table.summarise(r), "goals": []} for r in (real, cf)]
    shown = protocol_table.markdown(both)
    assert "| poly | 50.0 (1) | 50.0 ± 0.0, EM 0.0 (2) |" in shown  # exact match beside F1 where the data is invented
    assert "**Settings differ between pairs: split, build**" in shown  # the cf run's seeds have split dev, no build
    assert "**hotpotqa-cf, m: rows from more than one code version or from uncommitted changes** (abc, def)" in shown
    _seed(cf, 1, answers, code={**code, "commit": "def", "tree": "t1"})  # another commit, the same package code
    _seed(cf, 0, answers, code={**code, "commit": "abc", "tree": "t1"})
    shown = protocol_table.markdown([{**protocol_table.summarise(r), "goals": []} for r in (real, cf)])
    assert "hotpotqa-cf, m: rows from more than one" not in shown and "abc, def" in shown  # commits still named
    _seed(cf, 1, answers, code={**code, "commit": "def", "tree": "t2"})  # the package changed between the seeds
    shown = protocol_table.markdown([{**protocol_table.summarise(r), "goals": []} for r in (real, cf)])
    assert "**hotpotqa-cf, m: rows from more than one code version" in shown
    cpu = {"cpu": "EPYC", "cores": 2, "bf16_native": True, "threads": 2}
    _seed(cf, 0, answers, code={**code, "tree": "t1"}, machine=cpu)
    _seed(cf, 1, answers, code={**code, "tree": "t1"}, machine={**cpu, "bf16_native": False})  # another session's CPU
    shown = protocol_table.markdown([{**protocol_table.summarise(r), "goals": []} for r in (real, cf)])
    assert "hotpotqa-cf, m: rows timed on more than one machine, whose times are not comparable" in shown
    # rows an earlier run computed (bench --rows-from) keep their own commit, named apart: not this pair's mixed code
    for seed in (0, 1):
        _seed(cf, seed, {"poly": answers["poly"]}, code={**code, "commit": "new", "tree": "t2"})
        _seed(cf, seed, {"rag": answers["rag"]}, code={**code, "commit": "old", "tree": "t1"}, copied_from="rec")
    shown = protocol_table.markdown([{**protocol_table.summarise(r), "goals": []} for r in (real, cf)])
    assert "hotpotqa-cf, m: rows from more than one" not in shown
    assert "hotpotqa-cf, m: rows copied from an earlier run (`bench --rows-from`: no build setting reaches them), " \
           "computed at old: rag." in " ".join(shown.split())
    _seed(cf, 1, {"poly": answers["poly"]}, code={**code, "commit": "newer", "tree": "t3"})  # its own rows still checked
    shown = protocol_table.markdown([{**protocol_table.summarise(r), "goals": []} for r in (real, cf)])
    assert "**hotpotqa-cf, m: rows from more than one code version" in shown


def test_the_protocol_stops_while_another_bench_holds_a_pairs_folder(tmp_path):
    """A bench left running by a killed protocol.sh: the restarted script must not run the next pair beside it."""
    import shutil
    import subprocess

    from polyprag import atomic

    root = tmp_path / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    with atomic.folder_lock(root / "runs" / "protocol-2wiki-test-n100-smollm2"):  # what a running bench holds
        held = subprocess.run(["bash", str(root / "benchmarks" / "protocol.sh"), "run", "hotpotqa:smollm2",
                               "2wiki:smollm2"], capture_output=True, text=True, timeout=60)
    assert held.returncode == 1 and "another polyprag bench holds runs/protocol-2wiki-test-n100-smollm2 " in held.stderr
    assert "Traceback" not in held.stderr and not (root / "runs" / "protocol-hotpotqa-test-n100-smollm2").exists()
    # stopped before any pair: not even the first ran beside the bench that holds the second


def test_the_protocol_runs_the_readers_and_polys_rows_of_every_seed_before_the_trained_baselines(tmp_path):
    """protocol.sh's first pass (FIRST) lands a pair's poly reading in a session or two; the second runs every row;
    `first` runs only the first pass, of each pair named."""
    import shutil
    import subprocess

    root = tmp_path / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text("#!/bin/sh\necho --prag-lr 0.0003 --prag-epochs 4\n")  # prag_table.py --flags
    (bin_ / "polyprag").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')  # records each bench
    for f in bin_.iterdir():
        f.chmod(0o755)
    earlier = "benchmarks/results/before-paraphrase/protocol-hotpotqa-test-n100-smollm2"  # a pair begun before
    (root / earlier).mkdir(parents=True)
    done = subprocess.run(["bash", str(root / "benchmarks" / "protocol.sh"), "run", "hotpotqa:smollm2",
                           "hotpotqa-cf:smollm2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    methods = [c[c.index("--methods") + 1].split(",") for c in calls]
    assert [c[c.index("--dataset") + 1] for c in calls] == ["hotpotqa", "hotpotqa", "hotpotqa-cf", "hotpotqa-cf"]
    first, real, _, cf = methods
    assert set(first) < set(real) and set(first) < set(cf) and "poly" in first and "rag-gold" in first
    assert not any(m.startswith(("prag", "dyprag")) for m in first)
    assert "dyprag" in real and "dyprag" not in cf and set(real) - set(cf) == {"dyprag"}
    assert all(c[c.index("--prag-lr") + 1] == "0.0003" and "--seeds" in c for c in calls)
    # its rows no build setting reaches come from that record; the pair with no record runs every row
    assert [c[c.index("--rows-from") + 1] if "--rows-from" in c else None for c in calls] == [earlier, earlier, None, None]
    (tmp_path / "calls").unlink()
    done = subprocess.run(["bash", str(root / "benchmarks" / "protocol.sh"), "first", "hotpotqa-cf:smollm2",
                           "hotpotqa:gemma3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    assert [(c[c.index("--dataset") + 1], c[c.index("--model") + 1], c[c.index("--methods") + 1]) for c in calls] == [
        ("hotpotqa-cf", "smollm2-135m-instruct", ",".join(first)), ("hotpotqa", "gemma3-270m", ",".join(first))]


def test_poly_combine_is_read_against_the_stronger_rag_and_waits_for_rag_bare(scripts, tmp_path):
    """rag's prompt carries example exchanges, poly-combine's does not: the goal takes the stronger of the two readers."""
    protocol_table, _ = scripts
    right, half, wrong = ["Orla Pell", "1871", "Velmark", "yes"], ["Orla Pell", "1871", "z", "no"], ["x", "y", "z", "no"]
    run = tmp_path / "protocol-hotpotqa-test-n100-m"
    for seed in (0, 1, 2):
        _seed(run, seed, {"poly-combine": right, "rag": wrong, "poly": half, "poly-shuffled": half})
    goal = protocol_table.goals(protocol_table.summarise(run))[1]
    assert goal["goal"] == "poly-combine − the stronger rag (rag)" and goal["met"] is None  # rag-bare not run yet
    for seed in (0, 1, 2):
        _seed(run, seed, {"rag-bare": half})
    goal = protocol_table.goals(protocol_table.summarise(run))[1]
    assert goal["goal"] == "poly-combine − the stronger rag (rag-bare)" and goal["value"].startswith("+50.0")
    assert goal["met"] is False  # +50 over rag-bare, but 4 questions: neither interval lies above 0


def test_the_table_reads_one_run_folder_of_any_name(tmp_path):
    import subprocess
    import sys

    right, wrong = ["Orla Pell", "1871", "Velmark", "yes"], ["x", "y", "z", "no"]
    for seed in (0, 1):
        _seed(tmp_path / "briefs-test-m", seed, {"poly": right, "poly-shuffled": wrong})
        _seed(tmp_path / "protocol-hotpotqa-test-n100-m", seed, {"poly": wrong, "poly-shuffled": wrong})
    one = subprocess.run([sys.executable, str(BENCHMARKS / "protocol_table.py"), str(tmp_path / "briefs-test-m")],
                         capture_output=True, text=True, check=True).stdout
    assert "| poly | poly-shuffled | +100.0 |" in one  # that folder's rows, not the other's
    assert "| poly | poly-shuffled | +0.0 |" not in one
    every = subprocess.run([sys.executable, str(BENCHMARKS / "protocol_table.py"), str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout
    assert "| poly | poly-shuffled | +0.0 |" in every  # the root: protocol-* folders only
    assert "| poly | poly-shuffled | +100.0 |" not in every


def test_forward_stops_a_lever_whose_own_knowledge_fell_on_the_briefs_before_its_hotpotqa_seeds(tmp_path):
    """levers_dev.sh forward: a fall of own − shuffled on the briefs decides the rule, so HotpotQA's 3 seeds
    (~2 h) are not run for that lever; a lever that holds there runs HotpotQA and is judged by the verdict row."""
    import shutil
    import subprocess

    root = tmp_path / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    table = ["| briefs | bf16 | 3 | 21.0 | 1.7 | +19.3 [+10.4, +28.9] | all +19.3 |",
             "| briefs | bf16+title1 | 3 | 19.5 | 4.1 | +15.4 [+7.3, +25.1] | all +15.4 |",
             "| briefs | bf16+heads4 | 3 | 27.6 | 0.7 | +26.9 [+17.0, +37.3] | all +26.9 |",
             "| bf16+heads4 | 43.9 | +1.4 | - | briefs 3, hotpotqa 3 | yes |"]  # levers_table.py's rows, as it prints them
    (bin_ / "python").write_text("#!/bin/sh\ncat <<'T'\n" + "\n".join(table) + "\nT\n")
    (bin_ / "polyprag").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')  # records each bench
    for f in bin_.iterdir():
        f.chmod(0o755)
    done = subprocess.run(["bash", str(root / "benchmarks" / "levers_dev.sh"), "forward", "bf16", "title1", "heads4"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    outs = [c.split()[c.split().index("--out") + 1] for c in (tmp_path / "calls").read_text().splitlines()]
    assert outs == ["runs/levers-dev-briefs-n30-smollm2-bf16+title1", "runs/levers-dev-briefs-n30-smollm2-bf16+heads4",
                    "runs/levers-dev-hotpotqa-n100-smollm2-bf16+heads4"]
    assert "after title1: own - shuffled fell on the briefs (+15.4 +19.3), so the set is bf16" in done.stdout
    assert "after heads4: the set is bf16+heads4" in done.stdout


def test_lever_cost_times_the_defaults_then_the_lever_and_judges_the_ratio_against_the_bound(tmp_path):
    """benchmarks/lever_cost.sh: bench-speed twice (the defaults, then with the lever's flags), and the verdict is
    poly's encode s/doc ratio against the bound, over or within, from the two JSONs."""
    import shutil
    import subprocess
    import sys

    root = tmp_path / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    fake = """#!/bin/sh
echo "$@" >> CALLS
out=$(echo "$@" | sed 's/.*--json \\([^ ]*\\).*/\\1/'); mkdir -p "$(dirname "$out")"
case "$*" in *--paraphrases*) s=8.0 n=300 ;; *) s=5.0 n=200 ;; esac
echo "{\\"encode\\": {\\"poly_s_per_doc\\": $s}, \\"n_samples\\": $n, \\"machine\\": {\\"cpu\\": \\"x\\"}}" > "$out"
""".replace("CALLS", str(tmp_path / "calls"))
    (bin_ / "polyprag").write_text(fake)
    (bin_ / "polyprag").chmod(0o755)
    script = str(root / "benchmarks" / "lever_cost.sh")
    over = subprocess.run(["bash", script, str(tmp_path / "a"), "--paraphrases 1"], capture_output=True, text=True,
                          timeout=60, cwd=root)
    assert over.returncode == 0, over.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and "--paraphrases" not in calls[0] and "--paraphrases 1" in calls[1]
    verdict = json.loads((tmp_path / "a" / "verdict.json").read_text())
    assert verdict["ratio"] == pytest.approx(1.6) and not verdict["within"]
    assert verdict["samples"] == {"defaults": 200, "lever": 300}
    assert "1.60x (bound 1.49x): over" in over.stdout
    within = subprocess.run(["bash", script, str(tmp_path / "b"), "--paraphrases 1", "1.7"], capture_output=True,
                            text=True, timeout=60, cwd=root)
    assert within.returncode == 0, within.stderr
    assert json.loads((tmp_path / "b" / "verdict.json").read_text())["within"]


def test_paired_prints_any_two_rows_of_a_run_with_the_comparison_bench_would_write(tmp_path, bench_script, capsys):
    """benchmarks/paired.py: a pair bench's summary does not report, from the seeds' results.json, the same
    numbers as polyprag.eval.compare (a − b per seed, CIs), and a refusal for a folder without seeds."""
    from polyprag.eval.compare import compare

    gold = ["Orla Pell", "1871", "Velmark", "yes"]
    answers = {0: {"poly": ["Orla Pell", "1871", "x", "yes"], "prag-tuned": ["x", "1871", "x", "no"]},
               1: {"poly": ["Orla Pell", "x", "Velmark", "yes"], "prag-tuned": ["x", "x", "x", "yes"]}}
    results = []
    for seed, rows in answers.items():
        preds = {m: [{"id": i, "prediction": p, "answers": [g]} for i, (p, g) in enumerate(zip(got, gold))]
                 for m, got in rows.items()}
        results.append({"config": {"seed": seed}, "predictions": preds})
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "results.json").write_text(json.dumps(results[-1]))
    bench_script("paired").main([str(tmp_path), "poly:prag-tuned"])
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("| poly | prag-tuned | +50.0 |")  # 3 of 4 right against 1 of 4, both seeds
    assert compare(results, "poly", "prag-tuned")["f1_diff_per_seed"] == [50.0, 50.0]
    assert "+50.0 / +50.0" in line
    with pytest.raises(SystemExit, match="no seed-S/results.json"):
        bench_script("paired").main([str(tmp_path / "empty"), "poly:prag-tuned"])


def test_build_peak_measures_each_flag_set_in_its_own_build(tmp_path):
    """benchmarks/build_peak.sh: one build per flag set under GNU time, each row the peak of its own build (a fake
    build that holds ~200 MiB only when given --paraphrases 0 must show that row, and only that row, above it)."""
    import os
    import shutil
    import subprocess
    import sys

    if not Path("/usr/bin/time").exists():
        if os.environ.get("CI"):  # CI must run it: .ci/run installs GNU time
            pytest.fail("/usr/bin/time (GNU time) is missing")
        pytest.skip("needs GNU time at /usr/bin/time (apt-get install time)")
    root = tmp_path / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks", ignore=shutil.ignore_patterns("results", "data"))
    (root / "polyprag" / "data" / "sample").mkdir(parents=True)
    (root / "polyprag" / "data" / "sample" / "docs.jsonl").write_text("".join(f'{{"id": "d{i}"}}\n' for i in range(40)))
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # the venv's, with torch (machine())
    fake = f"""#!/bin/sh
echo "$@" >> {tmp_path / "calls"}
case "$*" in *"--paraphrases 0"*) exec {sys.executable} -c "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])" ;; esac
"""
    (bin_ / "polyprag").write_text(fake)
    for f in bin_.iterdir():
        f.chmod(0o755)
    done = subprocess.run(["bash", str(root / "benchmarks" / "build_peak.sh"), str(tmp_path / "out"), "--paraphrases 0",
                           ""], capture_output=True, text=True, timeout=60, cwd=root,
                          env={**os.environ, "DOCS": "8", "PYTHONPATH": str(Path(__file__).parents[1])})  # the real package
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and calls[0].endswith("--epochs 1 --paraphrases 0") and calls[1].endswith("--epochs 1")
    assert len((tmp_path / "out" / "docs.jsonl").read_text().splitlines()) == 8
    rows = (tmp_path / "out" / "table.md").read_text().splitlines()[2:]
    mib = [int(r.split(" MiB")[0].split("= ")[-1]) for r in rows]
    assert rows[0].startswith("| --paraphrases 0 |") and rows[1].startswith("| (the defaults) |")
    assert mib[0] >= 200 > mib[1]
