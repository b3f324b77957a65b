"""Objects passed between stages and runs: the object store and named artifacts."""
