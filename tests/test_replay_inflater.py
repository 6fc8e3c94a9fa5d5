"""The replay's gzip reader (``replay.Inflater``) reads what ``gzip`` reads, and fails where it fails:
several members (the recorder appends one on a restart), padding, a last line without its
newline, chunk edges anywhere; truncated, corrupt or trailing-garbage files raise."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.connector_feed.binance import replay
from services.connector_feed.binance.replay import Inflater


def _read_all(data: bytes, chunk: int = 64) -> list[bytes]:
    """Small chunks: edges inside headers, lines and members."""
    inflater, out = Inflater(io.BytesIO(data), chunk), []
    while (lines := inflater.lines()) is not None:
        out += lines
    return out


def _expected(data: bytes) -> list[bytes]:
    """Lines as a binary file iterates them (on b"\\n" only), without their newlines."""
    return [line.removesuffix(b"\n") for line in io.BytesIO(gzip.decompress(data))]


lines_strategy = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")), max_size=50)


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(lines_strategy, min_size=1, max_size=3),
    newline_at_end=st.booleans(),
    level=st.sampled_from([1, 6, 9]),
)
def test_it_reads_what_gzip_reads(members: list[list[bytes]], newline_at_end: bool, level: int) -> None:
    texts = [b"\n".join(lines) + b"\n" for lines in members]
    if not newline_at_end:
        texts[-1] = texts[-1].rstrip(b"\n")
    data = b"".join(gzip.compress(text, level) for text in texts)

    assert _read_all(data) == _expected(data) == _read_all(data, replay.READ_BUFFER)
    assert _read_all(data + b"\0" * 100) == _expected(data)  # zero padding, as gzip allows


def test_truncated_corrupt_and_trailing_garbage_raise_as_gzip_does() -> None:
    good = gzip.compress(b"1 a\n2 b\n" * 1000)
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    for bad, errors in (
        (good[: len(good) // 2], (EOFError,)),
        (bytes(corrupt), (zlib.error, EOFError)),
        (good + b"not gzip", (gzip.BadGzipFile,)),
    ):
        with pytest.raises(errors):
            _read_all(bad)
        with pytest.raises(errors):
            gzip.decompress(bad)


def test_an_empty_file_has_no_lines(tmp_path: Path) -> None:
    assert _read_all(b"") == []
