"""flowstage's core: models, scheduler, run context, hooks. Never imports an engine."""
