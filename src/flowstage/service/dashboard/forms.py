"""Reading the dashboard's HTML forms (``application/x-www-form-urlencoded``), without a
multipart parser: the forms post a few short fields."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The fields of a posted form (the last value of a repeated name wins).

    :raises HTTPException: the body is over ``limit`` bytes, or not a form
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(
            415, f"expected a form (application/x-www-form-urlencoded), got {kind!r}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the form is over the limit of {limit} bytes")
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True))
