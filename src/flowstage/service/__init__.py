"""``flowstage serve``: a long-lived process with one warm executor, a run queue, event
publication and a Flowdapt-compatible HTTP API.

``service.Service`` holds the executor and the queue; ``service.bus`` publishes events;
``service.api`` is the FastAPI application and ``service.server`` runs it with uvicorn.
FastAPI and uvicorn are imported only by ``api`` and ``server``, so the rest of flowstage
(and ``flowstage --help``) never loads them.
"""

from __future__ import annotations

from flowstage.core.errors import ServiceClosed
from flowstage.core.events import WORKFLOW_FINISHED, WORKFLOW_STARTED, Event
from flowstage.service.bus import EventBus
from flowstage.service.service import Service

__all__ = ["WORKFLOW_FINISHED", "WORKFLOW_STARTED", "Event", "EventBus", "Service", "ServiceClosed"]
