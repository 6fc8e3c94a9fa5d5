"""``hftfeed record``: make a recording without a venue, in the recorder's own layout and format.

- ``--source stub``: the stub's market as Binance spot frames (``stub_frames``) on a simulated
  clock: ``--seconds`` of trading written at once, deterministic for a ``--seed`` and ``--start``.
- ``--source replay --from PATH``: the first ``--seconds`` of recorded time of a recording, cut
  into a new one - how a small sample is made from a long live recording.

Both write through ``services.connector_feed.recorder.Recorder``, so the files are exactly what the
live connector writes (``<OUT>/<exchange>/<SYMBOL>_<YYYYMMDD>.gz``, lines ``<recv_ts_ns> <text>``)
and ``CONNECTOR_NAME=replay`` (or ``hftfeed replay``) reads them. Live Binance is recorded by the
feed itself: ``RECORD_DIR=<dir> hftfeed connector-feed``.
"""

from __future__ import annotations

import gzip
import itertools
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.cli.stub_frames import Line, stub_lines
from services.connector_feed.binance.replay import recordings
from services.connector_feed.recorder import Recorder, day_of
from services.connector_feed.stub import StubbedConnector, StubSettings

#: Lines handed to the recorder's writer thread before waiting for it to catch up (its queue holds
#: 200,000: waiting every 10,000 means nothing is ever dropped, whatever the disk's speed).
CHUNK = 10_000
SPOT_EXCHANGE = "binance"


class RecordError(Exception):
    """The recording could not be made or is incomplete; the message says why."""


@dataclass
class Recorded:
    lines: Counter[Path] = field(default_factory=Counter)  # lines written per file
    file_errors: list[str] = field(default_factory=list)  # source files cut short (replay source)

    @property
    def total(self) -> int:
        return sum(self.lines.values())


def write_lines(root: Path, exchange: str, lines: Iterable[Line], recorded: Recorded) -> None:
    """Every line through one ``Recorder`` under ``root/exchange``; raise if any was lost."""
    recorder = Recorder(root, exchange)
    submitted = 0
    try:
        for symbol, recv_ns, text in lines:
            recorder.write(symbol, recv_ns, text)
            recorded.lines[recorder.path(symbol, day_of(recv_ns))] += 1
            submitted += 1
            if submitted % CHUNK == 0:
                while recorder.written + recorder.errors < submitted:  # the writer thread catches up
                    time.sleep(0.001)
    finally:
        recorder.close()
    if recorder.dropped or recorder.errors:
        raise RecordError(
            f"{recorder.dropped} lines dropped and {recorder.errors} write errors under {recorder.directory}"
        )


def record_stub(root: Path, settings: StubSettings, seconds: float, start_ns: int) -> Recorded:
    """``seconds`` of the stub's market (its settings: rates, seed, swing) as a Binance spot recording."""
    recorded = Recorded()
    write_lines(root, SPOT_EXCHANGE, stub_lines(StubbedConnector(settings), start_ns, seconds), recorded)
    return recorded


def _lines_of(path: Path, errors: list[str]) -> Iterator[tuple[int, str]]:
    """``(recv_ns, text)`` of each line of one recording; a corrupt tail ends it, reported."""
    number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
            for number, raw in enumerate(lines, start=1):
                stamp, _, text = raw.rstrip("\n").partition(" ")
                if not stamp.isdigit() or not text:
                    raise ValueError(f"line {number} is not '<recv_ts_ns> <text>'")
                yield int(stamp), text
    except (OSError, EOFError, zlib.error, ValueError) as error:
        errors.append(f"{path}: cut short after line {number}: {error}")


def record_slice(root: Path, source: Path, seconds: float, symbols: set[str] | None = None) -> Recorded:
    """The lines of ``source`` (a recording or a folder of them) received within ``seconds`` of its
    first line, into ``root/<exchange>/`` (same symbols, same layout); ``symbols`` keeps only those."""
    try:
        files = recordings(source)
    except ValueError as error:
        raise RecordError(str(error)) from None
    if symbols is not None:
        files = [f for f in files if f.name.rsplit("_", 1)[0] in symbols]
        if not files:
            raise RecordError(f"{source}: no recording of {', '.join(sorted(symbols))}")
    recorded = Recorded()
    firsts = [next(_lines_of(f, recorded.file_errors), None) for f in files]
    starts = [line[0] for line in firsts if line is not None]
    if not starts:
        raise RecordError(f"{source}: no readable line")
    end_ns = min(starts) + round(seconds * 1e9)
    by_exchange: dict[str, list[Path]] = {}
    for path in files:
        by_exchange.setdefault(path.parent.name, []).append(path)
    for exchange, paths in by_exchange.items():
        lines = (
            (path.name.rsplit("_", 1)[0], recv_ns, text)
            for path in paths
            for recv_ns, text in itertools.takewhile(
                lambda line: line[0] < end_ns, _lines_of(path, recorded.file_errors)
            )
        )
        write_lines(root, exchange, lines, recorded)
    recorded.file_errors = sorted(set(recorded.file_errors))
    return recorded


def record_command(
    out: Path,
    source: str,
    seconds: float,
    replay_from: Path | None,
    symbols: list[str] | None,
    stub: StubSettings,
    start_ns: int,
) -> int:
    """``hftfeed record``: make the recording, say what was written and how to replay it."""
    try:
        if source == "stub":
            recorded = record_stub(out, stub, seconds, start_ns)
            what = f"{seconds:g} s of the stub's market ({', '.join(stub.symbols)}) as Binance spot frames"
        elif replay_from is None:
            raise RecordError("--source replay needs --from <a recording or a folder of them>")
        else:
            recorded = record_slice(out, replay_from, seconds, set(symbols) if symbols else None)
            what = f"the first {seconds:g} s of {replay_from}"
    except RecordError as error:
        sys.stderr.write(f"hftfeed record: {error}\n")
        return 1
    for problem in recorded.file_errors:
        sys.stderr.write(f"warning: {problem}\n")
    lines = [f"recorded {recorded.total} lines: {what}"]
    lines += [f"  {path}  {count} lines" for path, count in sorted(recorded.lines.items())]
    folders = sorted({str(path.parent) for path in recorded.lines})
    lines += [f"replay it:  hftfeed replay {folder}" for folder in folders]
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0
