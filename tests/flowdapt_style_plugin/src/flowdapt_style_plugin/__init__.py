"""A Flowdapt-style plugin: stages that import only flowdapt.* (and the stdlib)."""
