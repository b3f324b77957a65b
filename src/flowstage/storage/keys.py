"""Names in the object store and in artifacts: keys, artifact names, namespaces, strategies."""

from __future__ import annotations

import re
from typing import Any

from flowstage.core.errors import InvalidKeyError

STRATEGIES = ("cluster_memory", "artifact", "fallback")
ALL_NAMESPACES = "*"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: ``get``'s default: raise ``ObjectNotFound`` instead of returning a default
MISSING: Any = _Missing()


_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_RESERVED = re.compile(r"\.tmp-|\.value-|\.artifact\.json$")


def validate_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        msg = (
            f"invalid namespace {namespace!r}: expected letters, digits, '_', '.' or '-' "
            f"(not starting with '.' or '-', at most 128 characters)"
        )
        raise InvalidKeyError(msg)
    return namespace


def validate_key(key: Any, what: str = "key") -> str:
    """``key`` if it is a relative ``/``-separated path without ``.``/``..`` segments.

    :raises InvalidKeyError: naming the key and what is wrong with it
    """
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"invalid {what} {key!r}: expected a string, got {type(key).__name__}"
        )
    problem = None
    if not key:
        problem = "it is empty"
    elif len(key) > 512:
        problem = "it is longer than 512 characters"
    elif any(ord(c) < 32 for c in key) or "\\" in key:
        problem = "it contains a backslash or a control character"
    elif key.startswith("/") or re.match(r"[A-Za-z]:", key) or "://" in key:
        problem = "it is an absolute path or a URL"
    else:
        for segment in key.split("/"):
            if segment in ("", ".", ".."):
                problem = f"it has an empty, '.' or '..' segment ({segment!r})"
                break
            if _RESERVED.match(segment):
                problem = f"segment {segment!r} is reserved for flowstage's own files"
                break
    if problem:
        msg = f"invalid {what} {key!r}: {problem}; use a relative name such as 'features/city_1'"
        raise InvalidKeyError(msg)
    return key
