"""Stdlib-only fallback for `--list` when behave does not import (no venv yet): a line scan of a feature
file's Feature/Scenario/Scenario Outline/Examples/tag lines, naming outline rows as behave does
(`<name> -- @<examples>.<row> <examples name>`, placeholders filled), and behave's tag expressions."""
from __future__ import annotations

import fnmatch
import re

KEYWORDS = {"feature": ("Feature:",), "outline": ("Scenario Outline:", "Scenario Template:"),
            "scenario": ("Scenario:", "Example:"), "examples": ("Examples:", "Scenarios:"),
            "other": ("Background:", "Rule:")}


def keyword_of(line: str) -> tuple[str | None, str]:
    """(kind, rest of the line) for a keyword line, else (None, line)."""
    for kind, words in KEYWORDS.items():
        for w in words:
            if line.startswith(w):
                return kind, line[len(w):].strip()
    return None, line


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def scan(text: str):
    """(feature name, feature line, entries) with entries (line, name, tags, rows|None), rows being
    (line, name, tags) of an outline's Examples; (None, 0, []) when the text has no Feature."""
    fname, fline, ftags, pending, entries = None, 0, [], [], []
    outline = examples = header = None
    in_doc = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(('"""', "```")):
            in_doc = not in_doc
            continue
        if in_doc or not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            pending += [t[1:] for t in line.split("#")[0].split() if t.startswith("@")]
            continue
        kind, rest = keyword_of(line)
        tags, pending = pending, ([] if kind else pending)
        if kind == "feature":
            fname, fline, ftags = rest, no, tags
        elif kind in ("scenario", "outline"):
            examples = None
            entry = (no, rest, sorted(set(ftags) | set(tags)), [] if kind == "outline" else None)
            entries.append(entry)
            outline = entry if kind == "outline" else None
        elif kind == "examples" and outline is not None:
            examples = {"index": (examples or {}).get("index", 0) + 1, "name": rest, "tags": tags, "row": 0}
            header = None
        elif kind == "other":
            outline = examples = None
        elif line.startswith("|") and examples is not None:
            if header is None:
                header = cells(line)
                continue
            examples["row"] += 1
            values = dict(zip(header, cells(line)))
            name = f"{outline[1]} -- @{examples['index']}.{examples['row']} {examples['name']}"
            name = re.sub(r"<([^>]+)>", lambda m: values.get(m.group(1), m.group(0)), name)
            outline[3].append((no, name, sorted(set(outline[2]) | set(examples["tags"]))))
    return fname, fline, entries


def parse_tag_expression(text: str):
    """A check(set_of_tags) -> bool for one behave tag expression: v2 (`@a and not (@b or @c)`, `*`
    wildcards) or v1 (`@a,@b` OR, `~@a` NOT). Raises ValueError when it cannot be parsed."""
    tokens = re.findall(r"\(|\)|[^\s()]+", text)
    if not any(t in ("and", "or", "not") for t in tokens) and ("," in text or "~" in text or len(tokens) == 1):
        alternatives = [a for a in re.split(r"[,\s]+", text) if a]
        return lambda have: any((not has(have, a[1:])) if a.startswith("~") else has(have, a) for a in alternatives)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take(expected=None):
        nonlocal pos
        tok = peek()
        if tok is None or (expected and tok != expected):
            raise ValueError(f"{text!r}: expected {expected or 'a tag'} at token {pos + 1}")
        pos += 1
        return tok

    def or_expr():
        left = and_expr()
        while peek() == "or":
            take()
            right, prev = and_expr(), left
            left = lambda h, a=prev, b=right: a(h) or b(h)   # noqa: E731
        return left

    def and_expr():
        left = not_expr()
        while peek() == "and":
            take()
            right, prev = not_expr(), left
            left = lambda h, a=prev, b=right: a(h) and b(h)   # noqa: E731
        return left

    def not_expr():
        tok = take()
        if tok == "not":
            inner = not_expr()
            return lambda h: not inner(h)
        if tok == "(":
            inner = or_expr()
            take(")")
            return inner
        if tok in ("and", "or", ")"):
            raise ValueError(f"{text!r}: unexpected {tok!r}")
        return lambda h, t=tok: has(h, t)

    check = or_expr()
    if peek() is not None:
        raise ValueError(f"{text!r}: unexpected {peek()!r}")
    return check


def has(have: set[str], tag: str) -> bool:
    """Whether a scenario's tags (without @) hold `tag` (with or without @, `*` wildcards allowed)."""
    tag = tag.lstrip("@")
    return any(fnmatch.fnmatchcase(h, tag) for h in have) if "*" in tag else tag in have
