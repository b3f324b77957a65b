"""Built-in executors, each a plugin registered through the ``flowstage.plugins`` entry points."""
