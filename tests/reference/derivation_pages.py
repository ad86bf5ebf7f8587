"""The worked numbers of the derivation pages (docs/derivations/*.md), as data.

Each worked example on a page is followed by a fenced ```toml block holding its numbers
(one TOML table per example). The tests read the numbers from there, so a page and
its tests cannot drift apart. A table may list in `shown` the keys whose values the
prose around it also shows (as `[a, b, c]`, `[[a, b], [c, d]]` or as the rows of a
drawn matrix); `shown_in_prose` lets a test check that the prose agrees too.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
import tomllib
from fractions import Fraction

import numpy as np

PAGES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "derivations"
_TOML_BLOCK = re.compile(r"^```toml[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_LIST = re.compile(r"\[\s*[-+.\d][^\[\]]*\]")
_NESTED = re.compile(r"\[\s*\[[^\[\]]*\](?:\s*,\s*\[[^\[\]]*\])*\s*\]")


@functools.lru_cache(maxsize=None)
def page_text(page: str) -> str:
    return (PAGES / f"{page}.md").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def worked_examples(page: str) -> dict:
    """Every table of every ```toml block of docs/derivations/<page>.md."""
    tables: dict = {}
    for block in _TOML_BLOCK.findall(page_text(page)):
        for name, table in tomllib.loads(block).items():
            if name in tables:
                raise ValueError(f"{page}.md: the worked example [{name}] appears twice")
            tables[name] = table
    if not tables:
        raise ValueError(f"{page}.md has no ```toml block of worked numbers")
    return tables


def example(page: str, name: str) -> dict:
    tables = worked_examples(page)
    if name not in tables:
        raise KeyError(f"{page}.md has no worked example [{name}]; it has {sorted(tables)}")
    return tables[name]


def array(value, dtype=np.float64) -> np.ndarray:
    return np.asarray(value, dtype)


def printed(value: str) -> tuple[float, float]:
    """A printed decimal string as (value, half a unit of its last digit)."""
    mantissa = value.lower().split("e")[0]
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(value.lower().split("e")[1]) if "e" in value.lower() else 0
    return float(value), 0.5 * 10.0 ** (exponent - digits)


def fraction(value) -> Fraction:
    """[numerator, denominator] as a Fraction."""
    return Fraction(int(value[0]), int(value[1]))


def markdown_table(page: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after `heading` (the header row and the
    |---| rule left out)."""
    text = page_text(page)
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if not rows:
        raise ValueError(f"{page}.md: no table after {heading!r}")
    return [row for row in rows[1:] if not set("".join(row)) <= set("-: ")]


def prose(page: str) -> str:
    """The page without its toml blocks."""
    return _TOML_BLOCK.sub("", page_text(page))


_IN_LINE = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_RULE = re.compile(r"-{3,}")  # the rule of a drawn matrix, e.g. "-----+-----"


def _numbers(line: str) -> list[float]:
    return [float(t) for t in _IN_LINE.findall(line)]


def _contains_run(row, line_numbers) -> bool:
    n = len(row)
    return any(np.allclose(line_numbers[i:i + n], row, rtol=0, atol=1e-12)
               for i in range(len(line_numbers) - n + 1))


def shown_in_prose(page: str, value) -> bool:
    """True when the prose of the page shows `value`: a vector as a bracketed list, a
    matrix as a nested bracketed list or as consecutive lines containing its rows."""
    text = prose(page)
    value = np.asarray(value, np.float64)
    if value.ndim == 1:
        for match in _LIST.findall(text):
            try:
                found = np.asarray(json.loads(match), np.float64)
            except ValueError:
                continue
            if found.shape == value.shape and np.allclose(found, value, rtol=0, atol=1e-12):
                return True
        return False
    if value.ndim != 2:
        raise ValueError(f"shown_in_prose: expected a vector or a matrix, got shape {value.shape}")
    for match in _NESTED.findall(text):
        try:
            found = np.asarray(json.loads(match), np.float64)
        except ValueError:
            continue
        if found.shape == value.shape and np.allclose(found, value, rtol=0, atol=1e-12):
            return True
    lines = text.splitlines()
    numbers = [_numbers(line) for line in lines]

    def rows_from(i):
        r = 0
        while r < len(value) and i < len(lines):
            if _contains_run(value[r], numbers[i]):
                r += 1
            elif not (r and _RULE.search(lines[i])):  # a drawn rule may split the rows
                return False
            i += 1
        return r == len(value)

    return any(rows_from(i) for i in range(len(lines)))


def check_shown(page: str, name: str) -> None:
    """Raises AssertionError unless every key `shown` by example `name` is in the prose."""
    table = example(page, name)
    missing = [key for key in table.get("shown", []) if not shown_in_prose(page, table[key])]
    if missing:
        raise AssertionError(
            f"{page}.md, [{name}]: the prose does not show {missing} as the toml block "
            "has them; the page's text and its machine-readable numbers disagree")


__all__ = ["array", "check_shown", "example", "fraction", "markdown_table", "page_text",
           "printed", "prose",
           "shown_in_prose", "worked_examples"]
