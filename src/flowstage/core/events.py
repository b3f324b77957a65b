"""Events: what a service publishes to its subscribers and to plugins
(``flowstage_event_published``), named as Flowdapt names them so that Flowdapt's
trigger rules match them unchanged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: a run has started (``data``: the run record)
WORKFLOW_STARTED = "com.event.workflow.workflow_started"
#: a run has ended: finished, failed or cancelled (``data``: the run record)
WORKFLOW_FINISHED = "com.event.workflow.workflow_finished"


@dataclass(frozen=True)
class Event:
    """One event: a dotted ``type``, who published it, and JSON-ready ``data``."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    #: who published it (``flowstage.service`` for the service's own events)
    source: str = "flowstage.service"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (``time`` as ISO 8601)."""
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time.isoformat(),
            "data": self.data,
        }
