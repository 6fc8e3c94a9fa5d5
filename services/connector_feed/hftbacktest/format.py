"""hftbacktest's data format, without importing hftbacktest: the 64-byte event dtype and its flags.

Values are those of hftbacktest 2.4.4 (``hftbacktest/src/types.rs``, ``py-hftbacktest/hftbacktest/
types.py``); ``tests/test_hftbacktest_proof.py`` asserts they equal the installed package's. Also the
two roundings hftbacktest applies to every price and quantity (``round()`` in Rust: half away from
zero, then a saturating cast; NaN becomes 0), so our integer ticks and lots are hftbacktest's.
"""

from __future__ import annotations

import math
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

#: ``ev, exch_ts, local_ts, px, qty, order_id, ival, fval``: 64 bytes a row, npz key ``data``.
EVENT_DTYPE = np.dtype(
    [
        ("ev", "<u8"),
        ("exch_ts", "<i8"),
        ("local_ts", "<i8"),
        ("px", "<f8"),
        ("qty", "<f8"),
        ("order_id", "<u8"),
        ("ival", "<i8"),
        ("fval", "<f8"),
    ],
    align=True,
)
Rows = NDArray[np.void]

DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
DEPTH_BBO_EVENT = 5
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
KIND_MASK = 0xFF
#: The flag bits above the kind byte that this module knows.
VIEW_BITS = EXCH_EVENT | LOCAL_EVENT

_I64_MAX = (1 << 63) - 1
_I64_MIN = -(1 << 63)


class HbtDataError(ValueError):
    """hftbacktest data we cannot use (a file, a dtype, a setting): the message says which and why."""


def rust_round(value: float) -> int:
    """``(value).round() as i64`` in Rust: half away from zero, saturating, NaN -> 0."""
    if value != value:
        return 0
    if math.isinf(value):
        return _I64_MAX if value > 0 else _I64_MIN
    magnitude = abs(value)
    whole = math.floor(magnitude)
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    result = rounded if value >= 0 else -rounded
    return max(_I64_MIN, min(_I64_MAX, result))


def to_wire(units: int, step: Decimal) -> str:
    """``units`` ticks (or lots) of ``step`` as a plain decimal string with ``step``'s digits."""
    return format(units * step, "f")


def as_rows(array: object, where: str) -> Rows:
    """``array`` as a 1-D event array; ``HbtDataError`` naming ``where`` if it is not one."""
    if not isinstance(array, np.ndarray) or array.ndim != 1:
        raise HbtDataError(f"{where}: not a 1-D event array")
    if array.dtype == EVENT_DTYPE:
        return array
    names = array.dtype.names or ()
    if array.dtype.itemsize != EVENT_DTYPE.itemsize or len(names) != len(EVENT_DTYPE.names or ()):
        raise HbtDataError(f"{where}: dtype {array.dtype} is not hftbacktest's 64-byte event_dtype")
    try:  # same layout, other field names (hftbacktest itself only warns): view it as ours
        return array.view(EVENT_DTYPE)
    except (TypeError, ValueError) as error:
        raise HbtDataError(f"{where}: dtype {array.dtype} cannot be read as event_dtype: {error}") from None


def load_rows(path: Path) -> Rows:
    """The ``data`` array of an ``.npz`` (or a plain ``.npy``) file."""
    try:
        if path.suffix == ".npy":
            return as_rows(np.load(path, allow_pickle=False), str(path))
        with np.load(path, allow_pickle=False) as archive:
            if "data" not in archive.files:
                raise HbtDataError(f"{path}: no 'data' array (has {archive.files})")
            return as_rows(archive["data"], str(path))
    except HbtDataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # zip, npy header, truncation
        raise HbtDataError(f"{path}: not a readable .npz/.npy event file: {error!r}") from None
