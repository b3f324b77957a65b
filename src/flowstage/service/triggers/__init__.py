"""Trigger rules run by the service: Flowdapt's schedules and condition rules."""

from flowstage.service.triggers.clock import Clock, ManualClock, WallClock
from flowstage.service.triggers.conditions import RuleIndex, evaluate
from flowstage.service.triggers.engine import Triggers

__all__ = ["Clock", "ManualClock", "RuleIndex", "Triggers", "WallClock", "evaluate"]
