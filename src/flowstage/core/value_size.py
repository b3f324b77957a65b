"""A quick guess at whether a value is small, to keep small cache work on the event loop.

Pickling, unpickling or digesting a small value costs less than handing it to a thread,
so the driver does it at once; a big one would hold up the event loop (in
``flowstage serve``, the API) and goes to a thread. The guess looks at a bounded number
of objects and never pickles anything.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

#: below this many bytes (pickled, about) cache work on a value stays on the event loop
INLINE_BYTES = 64 * 1024
#: objects looked at before a value counts as big
_MAX_OBJECTS = 256
#: types whose values are a few bytes each
_SCALARS = (
    int,
    float,
    complex,
    bool,
    type(None),
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
)


def is_small(value: Any, limit: int = INLINE_BYTES) -> bool:
    """Whether ``value`` is surely under about ``limit`` bytes: strings, bytes, numbers,
    dates and containers of them (at most 256 objects in all), and objects with an
    ``nbytes`` (arrays). Any other object, or more objects, counts as big.

    :param limit: the size in bytes
    """
    todo = [value]
    size = 0
    looked_at = 0
    while todo:
        item = todo.pop()
        looked_at += 1
        if looked_at > _MAX_OBJECTS:
            return False
        if isinstance(item, (str, bytes, bytearray)):
            size += len(item)
        elif isinstance(item, int):
            size += 8 + item.bit_length() // 8
        elif isinstance(item, _SCALARS):
            size += 16
        elif isinstance(item, (list, tuple, set, frozenset, dict)):
            if len(item) > _MAX_OBJECTS:
                return False
            todo.extend(item)
            if isinstance(item, dict):
                todo.extend(item.values())
        elif isinstance(getattr(item, "nbytes", None), int):
            size += item.nbytes
        else:
            return False
        if size > limit:
            return False
    return True
