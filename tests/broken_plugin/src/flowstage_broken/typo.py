"""A hook whose name is misspelled: reported when the plugin loads, never silently ignored."""

from flowstage import hookimpl


@hookimpl
def flowstage_run_stared(run):  # "stared": should be flowstage_run_started
    pass
