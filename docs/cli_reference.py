"""Writes docs/cli-reference.md: every `polyprag` command and flag, read from the parser the CLI itself uses, so the
reference cannot drift from the code (tests/test_cli.py fails when the committed file is not this output).
    .venv/bin/python docs/cli_reference.py          # rewrite docs/cli-reference.md after changing a flag
Written here rather than taken from argparse's --help text: that text's layout changes between Python versions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyprag.cli import _parser

OUT = Path(__file__).with_name("cli-reference.md")


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order `polyprag --help` lists them. argparse keeps
    them only in private fields; reading these is less code than a second list of commands that could drift."""
    group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(c.dest, c.help or "", group.choices[c.dest]) for c in group._choices_actions]


def _flag_row(action: argparse.Action, prog: str) -> str:
    """`| flags | value | help |` for one argument, its help expanded as argparse expands it (%(default)s ...)."""
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    choices = None if action.choices is None else [str(c) for c in action.choices]
    if choices is not None:
        value = " \\| ".join(choices)
    else:
        value = "(switch)" if action.nargs == 0 else str(action.metavar or action.dest.upper())
    params = dict(vars(action), prog=prog) | ({"choices": ", ".join(choices)} if choices is not None else {})
    text = action.help % params if action.help and action.help is not argparse.SUPPRESS else ""
    text = " ".join(text.split()).replace("|", "\\|")  # one table cell: no line breaks, no bare pipes
    return f"| {names} | {value} | {text} |"


def _table(parser: argparse.ArgumentParser) -> list[str]:
    rows = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    return ["| argument | value | what it does |", "|---|---|---|", *(_flag_row(a, parser.prog) for a in rows)]


def reference() -> str:
    parser = _parser()
    commands = _commands(parser)
    lines = ["# Command reference", "",
             "Every `polyprag` command and flag, generated from the CLI's own parser by `docs/cli_reference.py`"
             " (do not edit by hand). How to use them together: [cli.md](cli.md).", "",
             *(f"- [`{name}`](#polyprag-{name}): {text}" for name, text, _ in commands),
             "", "Before the command (`polyprag -q build ...`):", "", *_table(parser)]
    for name, text, sub in commands:
        lines += ["", f"## polyprag {name}", "", text, "", *_table(sub)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(reference())
    print(f"wrote {OUT}", file=sys.stderr)
