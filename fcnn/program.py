"""How a command-line program of fcnn ends: its exit code, and Ctrl-C.

    if __name__ == "__main__":
        program.run(main)

`run` calls `main()` and exits with its code. After Ctrl-C (code 130, the shell's
convention for SIGINT) the program has already said where it stopped and what was
kept; the process then ends at once (`os._exit` after flushing the output) instead
of going through the interpreter's finalization: JAX's runtime may still have work in
flight on its own threads (an asynchronous dispatch or a compilation started just
before the interrupt), and tearing its objects down under them is what made an
interrupted run occasionally end in a segmentation fault after its clean message.
Every file the library writes is complete on disk before the message (written to a
temporary file, flushed and renamed), so nothing is lost by skipping finalization.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

INTERRUPTED = 130


def end(code: int) -> NoReturn:
    """Exits with `code`; 130 (interrupted) skips the interpreter's finalization."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code == INTERRUPTED:
        os._exit(INTERRUPTED)
    sys.exit(code)


def run(main: Callable[[], int], name: str | None = None) -> NoReturn:
    """Runs `main()` and exits with its code; Ctrl-C that `main` did not handle ends
    with one line and code 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{name or 'program'}: interrupted\n")
        code = INTERRUPTED
    end(code)
