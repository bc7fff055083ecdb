"""BENCHMARKS.md's "Where each default was chosen": every setting whose config records where its default was
chosen (polyprag.settings, `chosen=`). tests/test_settings.py checks that BENCHMARKS.md holds this table.

    .venv/bin/python benchmarks/defaults_table.py
"""

from polyprag.adapters import InventoryConfig
from polyprag.manifest import BuildConfig
from polyprag.settings import defaults_table
from polyprag.train import TrainConfig

CONFIGS = (InventoryConfig, TrainConfig, BuildConfig)

if __name__ == "__main__":
    print(defaults_table(*CONFIGS), end="")
