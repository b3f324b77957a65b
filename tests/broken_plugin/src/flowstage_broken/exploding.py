"""Would provide the ``exploding`` executor, but needs a package that is not installed."""

import flowstage_engine_that_is_not_installed  # noqa: F401  (the point: ImportError on load)
