"""The ``dask`` executor and its cluster-memory backend."""
