"""The simulator's input files: the error every reader raises, and how files are opened.

Readers live in ``traces`` (the Alibaba trace CSVs) and ``specs`` (hand-written cluster and
workload YAML). Each either returns core objects or raises ``InputError``, which names the
file, the line, the field and the fix. Nothing else escapes for bad content: unreadable files,
CSV and YAML syntax, pydantic validation and the core models' own ``ValueError`` all become
``InputError``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TextIO

MAX_CARDS_PER_NODE = 1024
"""Far above any real server (16 cards); a larger count is a typo that would build millions of cards."""


class InputError(Exception):
    """Bad input file. Carries file, line (1-based, or None), field (or None) and a message with the fix.

    ``str(err)`` reads ``pods.csv:17: field 'num_gpu': must be a whole number >= 0, got '-2'``;
    the line and field parts are left out when unknown.
    """

    def __init__(self, file: str, message: str, *, line: int | None = None, field: str | None = None):
        super().__init__(file, message)
        self.file = file
        self.message = message
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = self.message if self.field is None else f"field '{self.field}': {self.message}"
        return f"{where}: {what}"


def file_name(path: str | os.PathLike) -> str:
    return os.fsdecode(path)


@contextlib.contextmanager
def open_text(file: str, path: str | os.PathLike) -> Iterator[TextIO]:
    """The file opened as UTF-8 text (a byte-order mark is skipped), with read errors as ``InputError``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            yield f
    except OSError as exc:
        raise InputError(file, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(file, f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
