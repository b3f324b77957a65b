"""A stage that uses the run config the way Flowdapt stages do: as a plain dict."""

from __future__ import annotations

import json
from typing import Any

from flowstage import get_run_context


def dump() -> dict[str, Any]:
    context = get_run_context()
    config = context.config
    try:
        config["study"] = "changed"  # type: ignore[index]
        read_only = "no error"
    except TypeError:
        read_only = "TypeError"
    return {
        "json": json.dumps(config),
        "merged": config | {"study": "y", "more": 2},
        "attribute": config.nested,
        "input": dict(config.input),
        "read_only": read_only,
        "uid": context.run.uid,
        "id": context.run.id,
        "name": context.run.name,
    }
