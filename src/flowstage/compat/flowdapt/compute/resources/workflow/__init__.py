"""``flowdapt.compute.resources.workflow``: the run context of a stage."""
