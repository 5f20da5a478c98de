"""docs/cli.md against the click command tree (issue 30): every command, subcommand and option is
documented in its command's section, and every command that reports something takes `--json`.

A command or option added to cdc/cli.py without its line in docs/cli.md fails here, as does a
reporting command without `--json`.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cdc.cli import main

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()

# Commands that report nothing (they log while they stream): the only ones without --json.
NO_REPORT = {"run", "sink"}


def leaves(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command that runs something, with its path under `cdc` (hidden ones included)."""
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out.extend(leaves(command, (*path, name)))
        else:
            out.append(((*path, name), command))
    return out


def sections() -> dict[str, str]:
    """docs/cli.md's `##`/`###` sections: heading -> its text (up to the next heading)."""
    parts = re.split(r"^(#{2,3} .*)$", DOC, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def section_of(path: tuple[str, ...], command: click.Command) -> str:
    """The section that documents `cdc PATH`: its heading names `cdc PATH` (a group's subcommands:
    `cdc GROUP`); the deprecated commands have theirs."""
    if command.hidden:
        [text] = [text for title, text in sections().items() if title == "## Deprecated commands"]
        return text
    wanted = f"`cdc {' '.join(path[:1] if len(path) > 1 else path)}"
    found = [f"{title}\n{text}" for title, text in sections().items()
             if title.startswith("### ") and wanted in title]
    assert len(found) == 1, f"docs/cli.md: no single `### ` section for cdc {' '.join(path)} ({len(found)})"
    return found[0]


def long_options(command: click.Command) -> list[str]:
    return [opt for param in command.params if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts if opt.startswith("--")]


LEAVES = leaves()


def test_the_tree_is_what_this_test_expects():
    """So that the walk cannot pass by finding nothing."""
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"run", "snapshot", "verify", "rebuild", "replay", "status", "check", "sink", "indices plan",
            "indices create", "dlq list", "dlq show", "dlq retry", "dlq purge", "check-config", "position"} <= names
    assert NO_REPORT <= names and "init" in names


@pytest.mark.parametrize("path, command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_and_option_is_in_its_section_of_docs_cli_md(path, command):
    name = " ".join(path)
    assert re.search(rf"`cdc {re.escape(name)}\b", DOC), f"cdc {name} is not in docs/cli.md"
    text = section_of(path, command)
    assert re.search(rf"cdc {re.escape(name)}\b", text), f"cdc {name} is not in its section"
    for option in long_options(command):
        assert re.search(rf"[`\s]{re.escape(option)}\b", text), f"cdc {name} {option} is not in its section of docs/cli.md"
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        # Arguments are shown by their metavar in the section's usage (ID, ID...).
        assert re.search(rf"cdc {re.escape(name)} (\[)?ID", text), f"cdc {name}: its argument is not shown"


@pytest.mark.parametrize("path, command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_with_a_report_takes_json(path, command):
    if command.hidden:  # deprecated aliases keep the options they had (docs/cli.md: Deprecated commands)
        return
    has_json = "--json" in long_options(command)
    assert has_json == (" ".join(path) not in NO_REPORT), " ".join(path)


@pytest.mark.parametrize("path, command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_reads_cdc_config(path, command):
    [config] = [p for p in command.params if p.name == "config_path"]
    assert isinstance(config, click.Option) and config.envvar == "CDC_CONFIG" and config.required


def test_the_deprecated_commands_are_hidden_and_documented_with_their_replacement():
    hidden = {" ".join(path) for path, command in LEAVES if command.hidden}
    assert hidden == {"check-config", "position"}
    text = sections()["## Deprecated commands"]
    assert "| `cdc check-config --config FILE` | `cdc check --offline` |" in text
    assert "| `cdc position --config FILE` | `cdc status --position` |" in text


def test_version_and_completion_are_documented_and_work():
    version = CliRunner().invoke(main, ["--version"], prog_name="cdc")
    assert version.exit_code == 0 and "`cdc --version`" in DOC
    assert version.stdout.startswith("cdc, version ") and "`cdc, version X.Y.Z`" in DOC
    assert 'eval "$(_CDC_COMPLETE=bash_source cdc)"' in DOC
    script = CliRunner().invoke(main, [], prog_name="cdc", env={"_CDC_COMPLETE": "bash_source"})
    assert script.exit_code == 0 and "complete -o nosort -F _cdc_completion cdc" in script.stdout
    offered = CliRunner().invoke(main, [], prog_name="cdc", env={
        "_CDC_COMPLETE": "bash_complete", "COMP_WORDS": "cdc check --o", "COMP_CWORD": "2"})
    assert offered.stdout.splitlines() == ["plain,--offline"]
    # The deprecated names are not offered.
    commands = CliRunner().invoke(main, [], prog_name="cdc", env={
        "_CDC_COMPLETE": "bash_complete", "COMP_WORDS": "cdc ", "COMP_CWORD": "1"})
    offered_names = {line.split(",", 1)[1] for line in commands.stdout.splitlines()}
    assert {"check", "status", "dlq"} <= offered_names and not offered_names & {"check-config", "position"}
