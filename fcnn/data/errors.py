"""Errors raised by the dataset readers, and the messages they share."""

from __future__ import annotations

import os


class DataFormatError(ValueError):
    """A dataset file exists but its contents are not what its format promises.

    The message names the file and what was wrong with it.
    """


KINDS = ("train", "test")


def check_kind(kind: str) -> str:
    """The split a reader is asked for: "train" or "test"."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected 'train' or 'test'")
    return kind


DATA_DIR_HELP = (
    "pass the directory with --data-dir DIR (data_dir=... in Python) or set the "
    "FCNN_DATA_DIR environment variable; the 'digits' dataset needs no files"
)


def missing_files_error(directory, expected, what: str) -> FileNotFoundError:
    """A FileNotFoundError naming the directory and the files that were expected there."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        found = "it is a file, not a directory"
    elif not os.path.isdir(directory):
        found = "the directory does not exist"
    else:
        entries = sorted(os.listdir(directory))
        shown = ", ".join(entries[:12]) + (", ..." if len(entries) > 12 else "")
        found = f"it contains: {shown}" if entries else "it is empty"
    listed = ", ".join(expected)
    return FileNotFoundError(
        f"{what}: expected the files {listed} in {directory!r}, but {found}"
    )
