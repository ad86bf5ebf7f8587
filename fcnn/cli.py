"""Command-line helpers shared by `make run`, the experiments and the benchmarks.

Bad arguments end a program with exit code 2 and one line on stderr (argparse's
convention), never a traceback.
"""

from __future__ import annotations

import argparse

from fcnn._checks import check_int, check_number


class UsageError(Exception):
    """A bad command-line value found after parsing (exit code 2, one line)."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message and exit code 2."""

    def error(self, message):  # argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parse(text: str, kind, expected: str, **bounds):
    """`text` as an int or a float, checked by fcnn's own checks (`check_int`,
    `check_number`: bools, NaN and infinities are refused) with `bounds`; errors in
    command-line words ("integer", and the text as typed)."""
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    check = check_int if kind is int else check_number
    try:
        return check(value, "value", **bounds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _parse(text, int, "a positive integer", low=1)


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _parse(text, int, "an integer >= 0", low=0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _parse(text, float, "a positive finite number", low=0.0, low_open=True)


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return _parse(text, float, "a finite number >= 0", low=0.0)


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a rate, an error)."""
    return _parse(text, float, "a number in (0, 1)", low=0.0, high=1.0, low_open=True, high_open=True)


def name_list(valid, what: str):
    """An argparse type for a comma-separated list of names from `valid`, each once."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))}; valid {what}: {', '.join(valid)}"
            )
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"{text!r}: each of the {what} at most once")
        return names

    parse.__name__ = what
    return parse


def number_list(kind, what: str):
    """An argparse type for a comma-separated list of positive numbers (int or float)."""
    element = positive_int if kind is int else positive_float

    def parse(text: str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        values = []
        for p in parts:
            try:
                values.append(element(p))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{what}: {err}") from None
        return tuple(values)

    parse.__name__ = what
    return parse
