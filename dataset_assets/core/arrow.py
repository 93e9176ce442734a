"""Fixed-width Arrow arrays to and from numpy over their buffers: no copies, and neither
``pa.array`` nor ``Array.to_numpy``, whose first call in a process imports pandas (~0.2 s in
every worker process)."""

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_NUMPY: dict[pa.DataType, np.dtype[Any]] = {
    pa.int64(): np.dtype(np.int64),
    pa.uint32(): np.dtype(np.uint32),
    pa.uint8(): np.dtype(np.uint8),
}


def arrow_array(data: "npt.NDArray[Any] | bytes", type_: pa.DataType, n: int = -1) -> pa.Array:
    """An Arrow array of ``n`` (default: ``len(data)``) fixed-size values over ``data``'s
    buffer."""
    return pa.Array.from_buffers(type_, len(data) if n < 0 else n, [None, pa.py_buffer(data)])


def numpy_view(values: pa.Array) -> np.ndarray:
    """A view of a fixed-width Arrow array without nulls as numpy, read from its buffer."""
    if values.null_count:
        raise ValueError(f"unexpected nulls in a {values.type} column")
    dtype = _NUMPY[values.type]
    if not len(values):
        return np.zeros(0, dtype)
    return np.frombuffer(
        values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
    )
