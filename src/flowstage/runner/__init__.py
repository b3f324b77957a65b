"""Starting runs: the Python API (``run_workflow``), the one place that prepares a run,
and background runs. Sits above the executors, the state and the storage it combines."""
