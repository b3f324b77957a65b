"""``flowdapt.compute.resources.workflows``: the spelling of the Stages docs."""
