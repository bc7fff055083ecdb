"""Settings as data: each default, flag and check is written once, in the config (polyprag.settings)."""

import pytest

from polyprag.lm.adapters import InventoryConfig
from polyprag.cli import _parser, main
from polyprag.errors import InputError
from polyprag.kb.manifest import BuildConfig
from polyprag.settings import flag_of, settings_of, shown_default
from polyprag.method.config import TrainConfig

CONFIGS = (InventoryConfig, TrainConfig, BuildConfig)


@pytest.mark.parametrize("command", ["build", "bench", "demo"])
def test_every_cli_setting_is_a_flag_with_the_configs_default(command):
    argv = {"build": ["build", "c.jsonl", "--out", "kb"], "bench": ["bench", "--out", "o"], "demo": ["demo"]}[command]
    args = vars(_parser().parse_args(argv))
    for config in CONFIGS:  # the demo included: it builds what `build` builds, no recipe of its own
        for f in settings_of(config):
            if not f.metadata["cli"]:
                continue
            assert args[flag_of(f)[2:].replace("-", "_")] == shown_default(f), (command, f.name)
    assert args["dtype"] == "auto"  # bfloat16 where the hardware computes in it (lm.models.DEFAULT_DTYPE)


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(batch_size=0), "batch_size=0 (--train-batch-size): must be >= 1"),
    (lambda: TrainConfig(objective="magic"), "objective='magic' (--objective): choose from ['nll', 'distill', 'both']"),
    (lambda: TrainConfig(tau=0.0), "tau=0.0: must be > 0"),  # a library-only setting names no flag
    (lambda: InventoryConfig(n_adapters=0), "n_adapters=0 (--adapters): must be >= 1"),
    (lambda: BuildConfig(combine_strength=5.0), "combine_strength=5.0 (--combine-strength): must be <= 4"),
    (lambda: BuildConfig(storage="fp8"), "storage='fp8' (--storage): choose from"),
])
def test_the_library_refuses_what_the_cli_refuses_naming_field_and_flag(make, message):
    with pytest.raises(InputError) as e:
        make()
    assert message in str(e.value)


def test_the_cli_refuses_a_setting_out_of_range_before_loading_anything(tmp_path, capsys):
    (tmp_path / "c.jsonl").write_text('{"id": "a", "text": "A is a town."}\n')
    assert main(["build", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "kb"), "--combine-strength", "0"]) == 2
    assert "combine_strength=0.0 (--combine-strength): must be > 0" in capsys.readouterr().out
    assert not (tmp_path / "kb").exists()


def test_benchmarks_md_says_where_each_default_was_chosen_as_the_configs_do():
    from pathlib import Path

    from polyprag.settings import defaults_table

    text = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text()
    assert defaults_table(*CONFIGS) in text, "rerun benchmarks/defaults_table.py into BENCHMARKS.md"
    assert "| `--combine-strength` | 0.5 |" in text  # the table is not empty
