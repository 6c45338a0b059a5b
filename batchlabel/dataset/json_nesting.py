"""A nesting limit for streamed JSON: refuse a document nested deeper than a stated depth before a parser sees it.

``ijson`` keeps a path string per open level (``item.item.item...``), so a document nested ``d`` levels deep costs
it memory and time quadratic in ``d`` (a 200 KB file of brackets needs tens of GB). :class:`NestingLimitedReader`
wraps the binary file the parser reads and scans each chunk as it passes, with numpy, for the bracket depth outside
strings; the chunk that goes deeper than ``max_depth`` raises :class:`JsonNestingError` naming the byte offset and
the top-level item, so memory and time stay bounded by the chunk size whatever the file holds.

Depth counts every open ``[`` or ``{``: a JSON array of tasks is level 1, a task level 2, a brush's ``rle`` list in
``annotations[].result[].value`` level 6. Strings are skipped (their quotes found with escapes honoured, also across
chunk boundaries), so brackets inside labels or text do not count. Invalid JSON is the parser's to report.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

#: Byte classes of the scan: 0 = anything else.
_QUOTE, _BACKSLASH, _OPEN, _CLOSE = 1, 2, 3, 4
_CLASSES = np.zeros(256, np.uint8)
_CLASSES[ord('"')] = _QUOTE
_CLASSES[ord("\\")] = _BACKSLASH
_CLASSES[[ord("["), ord("{")]] = _OPEN
_CLASSES[[ord("]"), ord("}")]] = _CLOSE


class JsonNestingError(ValueError):
    """The document nests deeper than ``max_depth`` at byte ``offset`` (0-based), inside top-level item ``item``
    (0-based; the n-th array or object of the top-level array)."""

    def __init__(self, *, max_depth: int, offset: int, item: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels at byte {offset} (item {item})")
        self.max_depth = max_depth
        self.offset = offset
        self.item = item


class NestingLimitedReader:
    """A read-only binary file over ``raw`` whose :meth:`read` raises :class:`JsonNestingError` on the first chunk
    that opens level ``max_depth + 1``. Give it to a streaming parser instead of ``raw``."""

    def __init__(self, raw: BinaryIO, *, max_depth: int) -> None:
        self.raw = raw
        self.max_depth = max_depth
        self._depth = 0  # open levels after the bytes read so far
        self._in_string = 0  # 1 while inside a string
        self._backslashes = 0  # backslashes ending the bytes read so far (an odd count escapes the next quote)
        self._offset = 0  # bytes read so far
        self._items = 0  # top-level arrays/objects opened so far

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self._scan(data)
        return data

    def _scan(self, data: bytes) -> None:
        classes = _CLASSES[np.frombuffer(data, np.uint8)]
        if self._backslashes or b"\\" in data:
            self._drop_escaped_quotes(classes)
        else:
            self._backslashes = 0
        positions = np.flatnonzero(classes)  # quotes and brackets only: the scan's work is on these
        if positions.size:
            kinds = classes[positions]
            quotes = kinds == _QUOTE
            in_string = (np.cumsum(quotes, dtype=np.int64) + self._in_string) & 1  # after each position
            steps = (kinds == _OPEN).astype(np.int64) - (kinds == _CLOSE)
            steps[in_string == 1] = 0
            depth = self._depth + np.cumsum(steps)
            opened_item = (steps == 1) & (depth == 2)
            deeper = depth > self.max_depth
            if deeper.any():
                first = int(np.argmax(deeper))
                item = self._items + int(opened_item[: first + 1].sum()) - 1
                raise JsonNestingError(max_depth=self.max_depth, offset=self._offset + int(positions[first]),
                                       item=max(item, 0))
            self._items += int(opened_item.sum())
            self._depth = int(depth[-1])
            self._in_string = int(in_string[-1])
        self._offset += len(data)

    def _drop_escaped_quotes(self, classes: np.ndarray) -> None:
        """Clear (in place) the class of every quote preceded by an odd run of backslashes, then of the backslashes;
        remember the run that ends the chunk."""
        backslash = classes == _BACKSLASH
        index = np.arange(classes.size)
        last_other = np.maximum.accumulate(np.where(backslash, -1, index))  # last non-backslash at or before i
        quotes = np.flatnonzero(classes == _QUOTE)
        before = quotes - 1
        other = np.where(before >= 0, last_other[np.maximum(before, 0)], -1)
        run = before - other + np.where(other < 0, self._backslashes, 0)
        classes[quotes[run % 2 == 1]] = 0
        classes[backslash] = 0
        tail = int(last_other[-1])
        self._backslashes = classes.size - 1 - tail + (self._backslashes if tail < 0 else 0)
