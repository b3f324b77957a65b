"""A hook whose prefix is misspelled: marked with @hookimpl, so it is reported too."""

from flowstage import hookimpl


@hookimpl
def flowstag_stage_finished(run, stage):  # "flowstag_": should be flowstage_stage_finished
    pass
