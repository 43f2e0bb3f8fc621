"""`Spilled`: a sequence kept on disk a page at a time, so its size is not the process's.

A rollback of ten million changes has ten million compensations and as many results: held as
Python objects they would not fit the machine. Each item is encoded to one line (orjson never
writes a raw newline) in an anonymous temporary file that the system deletes when it is closed;
only the page being written and the page last read are in memory, with one offset per page.
A small sequence never touches the disk: its only page is the one being written. The lines'
SHA-256 is kept as they are appended (`digest`): a plan's seal covers its compensations
without reading them again.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Generic, TypeVar, overload

T = TypeVar("T")

PAGE = 1000  # items per page: decoded together when one of them is read


class Spilled(Sequence[T], Generic[T]):
    """Append-only; ``encode`` gives an item's line (no newline in it), ``decode`` reads it
    back. Indexing, slicing and iterating decode a page at a time."""

    def __init__(self, encode: Callable[[T], bytes], decode: Callable[[bytes], T]):
        self.encode = encode
        self.decode = decode
        self._file: IO[bytes] | None = None
        self._offsets: list[int] = []  # where each page written to the file starts
        self._end = 0  # the file's length
        self._lines: list[bytes] = []  # the page being written
        self._count = 0
        self._hash = hashlib.sha256()
        self._cache: tuple[int, list[T]] | None = None

    @classmethod
    def of(
        cls, items: Iterable[T], encode: Callable[[T], bytes], decode: Callable[[bytes], T]
    ) -> Spilled[T]:
        spilled = cls(encode, decode)
        spilled.extend(items)
        return spilled

    def append(self, item: T) -> None:
        self.append_line(self.encode(item))

    def append_line(self, line: bytes) -> None:
        """Append an item already encoded (a line read from a saved file)."""
        if b"\n" in line:
            raise ValueError("an encoded item must be one line")
        self._hash.update(line + b"\n")
        self._lines.append(line)
        self._count += 1
        if len(self._lines) == PAGE:
            self._flush()

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def __iadd__(self, items: Iterable[T]) -> Spilled[T]:
        self.extend(items)
        return self

    @property
    def digest(self) -> str:
        """SHA-256 of every line so far, each ending in a newline (as `lines` gives them)."""
        return "sha256:" + self._hash.hexdigest()

    def lines(self) -> Iterator[bytes]:
        """Every item's line, in order, without its newline."""
        for page in range(self._pages()):
            yield from self._page_lines(page)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            found: list[T] = []
            for page in range(start // PAGE, (stop - 1) // PAGE + 1 if stop > start else 0):
                items = self._page(page)
                first = page * PAGE
                found += items[max(start - first, 0) : stop - first]
            return found
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("Spilled index out of range")
        return self._page(index // PAGE)[index % PAGE]

    def __iter__(self) -> Iterator[T]:
        for page in range(self._pages()):
            yield from self._page(page)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        if len(other) != self._count:
            return False
        if isinstance(other, Spilled) and other.encode is self.encode:
            return other.digest == self.digest
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<Spilled: {self._count} items, {self.digest}>"

    def close(self) -> None:
        """Delete the file now (it is deleted anyway when the object is collected)."""
        if self._file is not None:
            self._file.close()

    def __del__(self) -> None:
        self.close()

    def _pages(self) -> int:
        return len(self._offsets) + (1 if self._lines else 0)

    def _flush(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115  # closed in close()
        self._file.seek(self._end)
        data = b"\n".join(self._lines) + b"\n"
        self._file.write(data)
        self._offsets.append(self._end)
        self._end += len(data)
        self._lines = []

    def _page_lines(self, page: int) -> list[bytes]:
        if page == len(self._offsets):
            return list(self._lines)
        assert self._file is not None
        start = self._offsets[page]
        end = self._offsets[page + 1] if page + 1 < len(self._offsets) else self._end
        self._file.flush()
        self._file.seek(start)
        return self._file.read(end - start).split(b"\n")[:-1]

    def _page(self, page: int) -> list[T]:
        if self._cache is not None and self._cache[0] == page and page < len(self._offsets):
            return self._cache[1]
        items = [self.decode(line) for line in self._page_lines(page)]
        if page < len(self._offsets):  # the page being written still changes
            self._cache = (page, items)
        return items
