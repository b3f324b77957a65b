"""The CLI's client of a service (``--server URL`` or the ``service.url`` setting):
JSON over HTTP with the standard library, the service's errors as ``ServiceError``."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flowstage.core.caching import cache_mode
from flowstage.core.errors import ServiceError
from flowstage.core.settings import load_settings

#: the API's route of each resource kind
ROUTES = {"workflow": "workflows", "config": "configs", "trigger_rule": "triggers"}


def server_url(option: str | None) -> str | None:
    """The service to talk to: ``--server``, else the ``service.url`` setting."""
    if option:
        return option

    return load_settings().service.url


class RemoteService:
    """A service at ``url``; the token is the ``service.api_token`` setting."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.token = load_settings().service.api_token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 3600) -> Any:
        """The decoded answer. :raises ServiceError: unreachable, or an error status"""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except (ValueError, AttributeError):
                detail = exc.reason
            raise ServiceError(f"{self.url}: {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the service at {self.url}: {reason}") from None

    def run(
        self,
        workflow: str,
        run_input: dict[str, Any],
        *,
        wait: bool = True,
        cache: bool | str = True,
    ) -> Any:
        """Run ``workflow`` on the service (``cache`` as for ``run_workflow``)."""
        name = urllib.parse.quote(workflow, safe="")
        return self.request("POST", f"/workflows/{name}/run{_query(wait, cache)}", run_input)

    def retry(
        self,
        run_id: str,
        overrides: dict[str, Any] | None,
        *,
        wait: bool = True,
        cache: bool | str = True,
    ) -> Any:
        """Retry a run on the service (``overrides``: its ``input``, ``config``, ``executor``)."""
        path = f"/runs/{urllib.parse.quote(run_id, safe='')}/retry{_query(wait, cache)}"
        return self.request("POST", path, overrides or {})

    def runs(self, workflow: str | None = None, limit: int = 50) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (("workflow", workflow),) if v})
        return self.request("GET", f"/runs?limit={limit}" + (f"&{query}" if query else ""))

    def apply(self, document: dict[str, Any]) -> tuple[str, str]:
        """Create or update one resource; ``(kind, name)``."""
        kind = str(document.get("kind", ""))
        route = ROUTES.get(kind)
        if route is None:
            raise ServiceError(f"cannot apply a resource of kind {kind!r} to a service")
        applied = self.request("POST", f"/{route}/", document)
        return kind, str(applied["metadata"]["name"])

    def delete(self, kind: str, name: str) -> None:
        quoted = urllib.parse.quote(name, safe="")
        path = f"/workflows/run/{quoted}" if kind == "run" else f"/{ROUTES[kind]}/{quoted}"
        self.request("DELETE", path)

    def list(self, kind: str) -> Any:
        return self.request("GET", f"/{ROUTES[kind]}/")

    def cancel(self, run_id: str) -> Any:
        return self.request("POST", f"/runs/{urllib.parse.quote(run_id, safe='')}/cancel")


def _query(wait: bool, cache: bool | str) -> str:
    """The query string of a run or retry request: only what differs from the defaults."""
    given: dict[str, str] = {}
    if not wait:
        given["wait"] = "false"
    mode = cache_mode(cache)
    if mode != "use":
        given["cache"] = mode
    return "?" + urllib.parse.urlencode(given) if given else ""
