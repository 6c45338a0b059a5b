"""A command's one per-file progress display: a tqdm bar on stderr when it is a terminal (unless ``--no-progress``
or ``--json``), plain stderr lines otherwise. Used by ``encode`` (local and ``--ray``) and ``run``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any


class FileProgress:
    """The bar (or nothing): ``update`` per finished file, ``write`` a line above it (failures), ``postfix`` a short
    status after it (the detector's ETA), ``total`` once it is known."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def postfix(self, text: str | None) -> None:
        if self.bar is not None and text is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total


@contextlib.contextmanager
def file_progress(args: argparse.Namespace, *, total: int | None, desc: str) -> Iterator[FileProgress]:
    """The command's progress for ``total`` files (None: unknown yet), closed on exit."""
    bar = None
    if sys.stderr.isatty() and not getattr(args, "no_progress", False) and not getattr(args, "json", False):
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc=desc, file=sys.stderr)
    try:
        yield FileProgress(bar)
    finally:
        if bar is not None:
            bar.close()
