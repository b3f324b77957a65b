"""The ``flowstage`` command line (typer). Commands arrive through plugin hooks."""
