"""``flowdapt.compute.artifacts.dataset``: dataset hooks (pandas, imported when used)."""
