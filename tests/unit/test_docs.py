"""The documentation stays true to the code and whole (issue 30).

* docs/configuration.md's reference table is what scripts/config_reference.py makes of cdc/config.py now;
* every config key has a description (the docstring under its field);
* every relative Markdown link in README.md, BENCHMARKS.md and docs/ points at a file that exists,
  and an anchor (`page.md#anchor`) at a heading of that page.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_reference_table_is_current():
    script = _script()
    text = script.DOC.read_text()
    assert script.START in text and script.END in text
    assert script.render(text) == text, "docs/configuration.md is stale: run .venv/bin/python scripts/config_reference.py"


def test_every_config_key_is_documented():
    assert _script().undocumented() == []


def test_the_reference_lists_every_key_the_config_accepts():
    """Not only what the table holds today: a key of cdc/config.py is a row, by its dotted name."""
    script = _script()
    text = script.DOC.read_text()
    keys = [key for key, _ in script.fields()]
    assert {"mysql.server_id", "elasticsearch.hosts", "kafka.stall_after", "row_path", "state_dir"} <= set(keys)
    assert "base_dir" not in keys
    assert [key for key in keys if f"`{key}`" not in text] == []


def test_the_check_finds_an_undocumented_field():
    """The check can fail: a field without a docstring is reported by its dotted key. The docstrings are
    read from the source (cdc/config.py does not turn on pydantic's use_attribute_docstrings)."""
    from pydantic import BaseModel

    class Section(BaseModel):
        said: int = 1
        """Documented,
        on two lines."""
        unsaid: int = 2

    class Top(BaseModel):
        part: Section = Section()
        """A section."""

    script = _script()
    assert [k for k, info in script.fields(Top) if not info.description] == ["part.unsaid"]
    assert {k: info.description for k, info in script.fields(Top)} == {
        "part": "A section.", "part.said": "Documented,\non two lines.", "part.unsaid": None}


def test_the_config_models_read_no_docstrings_at_import():
    """pydantic's use_attribute_docstrings parses cdc/config.py's source at every import (a tenth of a
    command's start-up, issue 28); the reference script reads the docstrings instead."""
    from cdc.config import Config, MysqlConfig

    assert not Config.model_config.get("use_attribute_docstrings")
    assert MysqlConfig.model_fields["host"].description is None
    assert _script().docstrings(MysqlConfig)["host"].startswith("The MySQL or MariaDB server")


# ------------------------------------------------------------------ links
def _slug(heading: str) -> str:
    """The anchor of a heading as Python-Markdown's toc extension (mkdocs) makes it; GitHub agrees on ours."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _outside_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _outside_code(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where a link is not a link."""
    return re.sub(r"`[^`\n]*`", "", _outside_fences(text))


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?)\s*#*$", _outside_fences(path.read_text()), re.M)}


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(path: Path) -> list[str]:
    return [m.group(1) for m in re.finditer(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _outside_code(path.read_text()))]


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:: not a file of the repository
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{path.relative_to(ROOT)}: {link}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{path.relative_to(ROOT)}: {link}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_internal_links_point_at_files_and_headings_that_exist(path):
    assert broken_links(path) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `cdc sink`: here\n")
    page.write_text("[ok](other.md#a-cdc-sink-here) [gone](missing.md) [bad](other.md#nowhere)\n"
                    "`[code](missing.md)` [web](https://example.org/x.md)\n```\n[fenced](missing.md)\n```\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert broken_links(page) == ["page.md: missing.md: no such file",
                                      "page.md: other.md#nowhere: no heading with that anchor"]
    finally:
        ROOT = saved


def test_the_readme_is_short_and_leads_to_the_fixes():
    """Issue 30: a user's README, and the fixes for the commonest failures within two clicks of it."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 350
    assert "make demo" in readme and "make test" in readme
    for fix in ("troubleshooting.md#wrong-mysql-password", "troubleshooting.md#unknown-config-key",
                "troubleshooting.md#a-binlog-setting-is-missing-or-wrong"):
        assert f"(docs/{fix})" in readme


# ------------------------------------------------------------------ Markdown that renders the same in MkDocs
def layout_problems(text: str, name: str = "page.md") -> list[str]:
    """Lists MkDocs (Python-Markdown) would render flat or as running text, though GitHub renders them.

    Python-Markdown nests a list only when it is indented by four spaces, starts a list or a table
    only after a blank line, and does not fence code inside a list item.
    """
    problems, fence, prev = [], False, ""
    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            if line.startswith(" "):
                problems.append(f"{name}:{number}: a code fence inside a list item")
            fence = not fence
        elif not fence:
            marker = re.match(r"^( *)([*-]|\d+\.) ", line)
            if marker and len(marker.group(1)) % 4:
                problems.append(f"{name}:{number}: a nested list indented by {len(marker.group(1))}, not a multiple of 4")
            starts_block = (marker and not marker.group(1)) or (line.startswith("|") and not prev.startswith("|"))
            if starts_block and prev.strip() and not re.match(r"^( +|([*-]|\d+\.) )", prev):
                problems.append(f"{name}:{number}: a list or table right after a paragraph, without a blank line")
        prev = line
    return problems


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_the_docs_render_in_mkdocs_as_on_github(path):
    assert layout_problems(path.read_text(), path.name) == []


def test_the_layout_check_finds_what_mkdocs_renders_flat():
    text = "Extras:\n* a\n  * nested by two\n\n* b\n\n    ```json\n    {}\n    ```\nText\n| a |\n|---|\n"
    assert layout_problems(text) == [
        "page.md:2: a list or table right after a paragraph, without a blank line",
        "page.md:3: a nested list indented by 2, not a multiple of 4",
        "page.md:7: a code fence inside a list item",
        "page.md:9: a code fence inside a list item",
        "page.md:11: a list or table right after a paragraph, without a blank line"]
