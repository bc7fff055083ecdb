"""BENCHMARKS.md's "Where each default was chosen": every setting whose config records where its default was
chosen (polyprag.settings, `chosen=`). tests/test_settings.py checks that BENCHMARKS.md holds this table.

    .venv/bin/python benchmarks/defaults_table.py
"""

from polyprag.lm.adapters import InventoryConfig
from polyprag.kb.manifest import BuildConfig
from polyprag.settings import defaults_table
from polyprag.method.config import TrainConfig

CONFIGS = (InventoryConfig, TrainConfig, BuildConfig)

if __name__ == "__main__":
    print(defaults_table(*CONFIGS), end="")
