"""Settings as data: a config field carries its help, its command-line flag and its valid values, so that a
default, a flag and a check are each written once, in the config (PEFT's configs keep their help in field
metadata the same way). The CLI builds its flags from them (`add_flags`, `from_args`); every config checks its
values on creation (`check`), whoever creates it: the CLI, the library, a manifest, the service. And two saved
settings compared, setting by setting (`differences`: a run resumed with other settings is refused by name).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, field, fields
from typing import Any

from .errors import InputError


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None,
            at_least: float | None = None, above: float | None = None, at_most: float | None = None,
            cli: bool = True, chosen: str = "") -> Any:
    """A config field with its help, flag (default --field-name), allowed values and bounds; `cli=False`: a
    setting of the library only (no flag); `chosen`: the runs its default was chosen on (BENCHMARKS.md's
    "Where each default was chosen" is `defaults_table()` of these)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "at_least": at_least,
                                            "above": above, "at_most": at_most, "cli": cli, "chosen": chosen})


def settings_of(config) -> list[Field]:
    return [f for f in fields(config) if "help" in f.metadata]


def flag_of(f: Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def shown_default(f: Field):
    """A setting's default as a flag takes it: a tuple as comma-separated text."""
    default = f.default if f.default is not MISSING else f.default_factory()
    return ",".join(default) if isinstance(default, tuple) else default


def check(config) -> None:
    """Refuse a value outside its setting's choices or bounds, naming the field, its flag and what is allowed."""
    for f in settings_of(config):
        value, m = getattr(config, f.name), f.metadata
        where = f"{f.name}={value!r}" + (f" ({flag_of(f)})" if m["cli"] else "")
        if m["choices"] is not None and value not in m["choices"]:
            raise InputError(f"{where}: choose from {list(m['choices'])}.")
        if m["at_least"] is not None and not value >= m["at_least"]:
            raise InputError(f"{where}: must be >= {m['at_least']:g}. {m['help']}.")
        if m["above"] is not None and not value > m["above"]:
            raise InputError(f"{where}: must be > {m['above']:g}. {m['help']}.")
        if m["at_most"] is not None and not value <= m["at_most"]:
            raise InputError(f"{where}: must be <= {m['at_most']:g}. {m['help']}.")


def add_flags(p: argparse.ArgumentParser, config_class, only: tuple[str, ...] = (), skip: tuple[str, ...] = (),
              lists: tuple[str, ...] = ()) -> None:
    """One flag per CLI setting of `config_class` (those in `only`, but not in `skip`), its default in its help. `lists`:
    fields whose flag takes comma-separated values (several values: one row each, `bench`'s ablations)."""
    for f in settings_of(config_class):
        m = f.metadata
        if not m["cli"] or (only and f.name not in only) or f.name in skip:
            continue
        default, shown = f.default, shown_default(f)
        more = "; a list such as 1,4,8 adds one row per value" if f.name in lists else ""
        # %(default)s: argparse fills in the default in force (a command's own, set_defaults, included)
        kwargs: dict = {"default": shown, "help": f"{m['help'].replace('%', '%%')} (default %(default)s{more})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name in lists or isinstance(default, tuple):
            kwargs["type"] = str
        else:
            kwargs["type"] = type(default)
            if m["choices"] is not None:
                kwargs["choices"] = m["choices"]
        p.add_argument(flag_of(f), **kwargs)


def from_args(config_class, args: argparse.Namespace, **given) -> Any:
    """`config_class` from the parsed flags of its CLI settings (comma-separated text for tuples), plus `given`."""
    values = {}
    for f in settings_of(config_class):
        if not f.metadata["cli"] or f.name in given:
            continue
        value = getattr(args, flag_of(f)[2:].replace("-", "_"))
        default = f.default if f.default is not MISSING else None
        values[f.name] = tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(default, tuple) else value
    return config_class(**values, **given)


def defaults_table(*config_classes) -> str:
    """Markdown rows (flag | default | chosen on) of every setting whose config says where its default was chosen."""
    lines = ["| setting | default | chosen on |", "|---|---|---|"]
    for config in config_classes:
        for f in settings_of(config):
            if f.metadata["chosen"]:
                name = f"`{flag_of(f)}`" if f.metadata["cli"] else f"`{config.__name__}.{f.name}`"
                lines.append(f"| {name} | {shown_default(f)} | {f.metadata['chosen']} |")
    return "\n".join(lines) + "\n"


def with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved` with every key it lacks, at any depth, taken from `defaults`."""
    out = dict(saved)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_defaults(out[k], v)
    return out


def differences(key: str, saved, current) -> list[str]:
    """Each setting, by its dotted path, whose value in the saved run differs from this one's."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for k in sorted(set(saved) | set(current)) for d in differences(f"{key}.{k}", saved.get(k), current.get(k))]
    return [] if saved == current else [f"{key}: {saved!r} in the run, {current!r} now"]
