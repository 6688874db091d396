"""Where the generator's choices come from. One generator, three sources:

- `RandomSource(seed)`: a reproducible case per seed (campaigns, `callfuzz gen`);
- `ByteSource(data)`: any byte string decodes to a valid case (atheris, or any
  byte-level fuzzer); when the bytes run out every choice is its minimum;
- `HypothesisSource(data)`: Hypothesis draws, so its shrinking applies.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Source(Protocol):
    def integer(self, lo: int, hi: int) -> int:
        """A number in [lo, hi]; smaller is simpler."""
        ...


def choice(src: Source, options: Sequence[T]) -> T:
    return options[src.integer(0, len(options) - 1)]


def boolean(src: Source, percent_true: int = 50) -> bool:
    return src.integer(0, 99) < percent_true


class RandomSource:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, hi)


class ByteSource:
    """Reads big-endian chunks just wide enough for each range; past the end
    of the data every choice is `lo`, so generation always terminates."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def integer(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        width = (span.bit_length() + 7) // 8
        chunk = self._data[self._pos : self._pos + width]
        self._pos += width
        if not chunk:
            return lo
        return lo + int.from_bytes(chunk, "big") % (span + 1)


class HypothesisSource:
    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._data = data
        self._st = st

    def integer(self, lo: int, hi: int) -> int:
        return int(self._data.draw(self._st.integers(lo, hi)))
