"""Running the API with uvicorn: the bind check, and SIGTERM/SIGINT as a drain."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from flowstage.core.errors import ServiceError
from flowstage.service.api import create_app
from flowstage.service.service import Service

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from flowstage.core.settings import ServiceSettings

log = logging.getLogger("flowstage.service")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServiceSettings) -> None:
    """:raises ServiceError: a non-loopback address without an API token"""
    if not is_loopback(settings.host) and not settings.api_token:
        msg = (
            f"refusing to listen on {settings.host}: anyone who can reach it could run code. "
            "Set service.api_token (or FLOWSTAGE__SERVICE__API_TOKEN) so that every request "
            "needs it, or listen on 127.0.0.1"
        )
        raise ServiceError(msg)


class _DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains the service before it stops:
    no new runs, running runs get ``drain_timeout`` seconds, then are cancelled. A
    second SIGINT stops at once."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Future[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self._loop is None:
            if sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        log.warning("signal %d: draining (at most %gs)", sig, self.service.settings.drain_timeout)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            await self.service.drain(self.service.settings.drain_timeout)
        finally:
            self.should_exit = True


def serve(
    settings: ServiceSettings,
    *,
    executor: str | Mapping[str, Any] | None = None,
    run_triggers: bool = True,
) -> None:
    """Serve the API and the dashboard until SIGTERM or SIGINT (blocking).

    :param run_triggers: fire the applied trigger rules (off for ``flowstage ui``)
    :raises ServiceError: the address needs an API token
    """
    check_bind(settings)
    service = Service(settings, executor=executor, run_triggers=run_triggers)
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    _DrainingServer(config, service).run()
