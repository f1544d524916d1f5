"""The pyzram command as a Unix tool: one spelling per option, ``--version``, exit codes,
one-line errors naming the option or file, output that fits 80 columns, Ctrl-C."""

from __future__ import annotations

import typer.main

from pyzram.tools.cli import app


def _commands():
    """Every command and subcommand of ``pyzram`` as (its words, its click command)."""
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        yield name, cmd
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            yield f"{name} {sub}", subcmd


def test_one_spelling_per_option():
    """An algorithm is ``--algorithm``/``-a`` and ``--json`` is a flag (JSON on stdout)
    wherever they appear; no command spells them otherwise."""
    seen = {"algorithm": 0, "json": 0}
    for words, cmd in _commands():
        for p in cmd.params:
            names = [*p.opts, *getattr(p, "secondary_opts", [])]
            assert "--algo" not in names, words
            if p.name == "algo":
                assert sorted(names) == ["--algorithm", "-a"], (words, names)
                seen["algorithm"] += 1
            if "--json" in names:
                assert p.is_flag, f"{words}: --json takes no value"
                seen["json"] += 1
    assert seen["algorithm"] >= 8 and seen["json"] >= 10, seen
