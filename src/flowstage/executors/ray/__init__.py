"""The ``ray`` executor and its cluster-memory backend."""
