"""The API's answers and request bodies: JSON both ways, errors as
``{"status_code": N, "detail": "..."}``; shared by the app and its route modules."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response


class APIError(Exception):
    """An answer with an error status and a message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as a JSON answer (``str`` for what JSON lacks)."""
    body = json.dumps(data, default=str) if data is not None else "null"
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, detail: Any) -> Response:
    """An error answer in the shape Flowdapt's SDK raises from."""
    return json_response({"status_code": status, "detail": detail}, status)


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body of ``request`` (None when empty), read up to ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {declared} bytes, over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return None
    kind = request.headers.get("content-type", "application/json")
    if not is_json(kind):
        raise APIError(415, f"expected a JSON body (application/json), got {kind!r}")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply") from None


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json`` or ``*+json``)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")
