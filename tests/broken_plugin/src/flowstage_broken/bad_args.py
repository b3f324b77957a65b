"""A hook asking for an argument its spec does not have: pluggy rejects it at load time."""

from flowstage import hookimpl


@hookimpl
def flowstage_stage_started(run, stage, attempt):
    pass
