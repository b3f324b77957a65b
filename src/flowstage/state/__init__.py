"""What flowstage keeps between runs: the SQLite store of applied resources and run
history, the run recorder (a lifecycle-hook plugin), background runs and liveness."""
