"""Table name patterns (exact, glob, regex) and `{...}` templates for index names, ids and routing."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from typing import Literal



@dataclass(frozen=True)
class NamePattern:
    """How a rule names its schema or table: exactly, by glob, or by a (fully matching) regex.

    Captures are keyed "1", "2", ... (glob wildcards count as groups) and by group name.
    """

    kind: Literal["exact", "glob", "regex"]
    text: str

    def match(self, name: str) -> dict[str, str] | None:
        if self.kind == "exact":
            return {} if name == self.text else None
        found = _compiled(self.kind, self.text).fullmatch(name)
        if found is None:
            return None
        captures = {str(i): (value or "") for i, value in enumerate(found.groups(), 1)}
        captures.update({k: (v or "") for k, v in found.groupdict().items()})
        return captures

    @property
    def capture_names(self) -> frozenset[str]:
        if self.kind == "exact":
            return frozenset()
        regex = _compiled(self.kind, self.text)
        return frozenset({str(i) for i in range(1, regex.groups + 1)} | set(regex.groupindex))

    def __str__(self) -> str:
        return self.text if self.kind != "regex" else f"/{self.text}/"


@functools.lru_cache(maxsize=None)
def _compiled(kind: str, text: str) -> re.Pattern:
    return re.compile(_glob_regex(text) if kind == "glob" else text)


def _glob_regex(glob: str) -> str:
    """fnmatch-style glob -> regex whose groups are the wildcards (so `{table.1}` works)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("(.*)")
        elif c == "?":
            out.append("(.)")
        elif c == "[":
            j = i + 1
            j += glob[j:j + 1] == "!"
            j += glob[j:j + 1] == "]"  # a "]" first in the set is a member, as in fnmatch
            end = glob.find("]", j)
            if end < 0:  # no closing bracket: a literal "["
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("([" + body.replace("\\", "\\\\") + "])")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


_META = re.compile(r"(schema|table)(?:\.(\w+))?")


@dataclass(frozen=True)
class TemplateField:
    name: str  # "schema", "table", "table.1", "schema.tenant", or a column name
    spec: str  # format: strftime if it has a '%', else Python's format mini-language
    meta: bool  # the schema/table name or a capture, not a column


@dataclass(frozen=True)
class Template:
    """`orders-{table.1}-{created_at:%Y.%m}`: text with {fields}; `{{` and `}}` are literal braces."""

    text: str
    parts: tuple[str | TemplateField, ...]

    @property
    def fields(self) -> tuple[TemplateField, ...]:
        return tuple(p for p in self.parts if isinstance(p, TemplateField))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if not f.meta)

    @property
    def literal(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@functools.lru_cache(maxsize=None)
def parse_template(text: str) -> Template:
    parts: list[str | TemplateField] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if not name:
            raise ValueError(f"bad template {text!r}: empty {{}}; name a column, schema, table or a capture")
        if conversion:
            raise ValueError(f"bad template {text!r}: '!{conversion}' is not supported")
        if spec and "{" in spec:
            raise ValueError(f"bad template {text!r}: nested fields are not supported")
        parts.append(TemplateField(name, spec or "", bool(_META.fullmatch(name))))
    return Template(text, tuple(parts))


INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def check_index_name(text: str) -> None:
    literal = parse_template(text).literal
    if literal != literal.lower():
        raise ValueError(f"index name {text!r} must be lowercase")
    if not parse_template(text).parts or isinstance(parse_template(text).parts[0], str) and text[0] in "-_+":
        raise ValueError(f"{text!r} is not a valid index name (it may not start with -, _ or +)")
    if any(c in INDEX_FORBIDDEN for c in literal) or text in (".", ".."):
        raise ValueError(f"{text!r} is not a valid index name (no \\ / * ? \" < > | space , # :)")

