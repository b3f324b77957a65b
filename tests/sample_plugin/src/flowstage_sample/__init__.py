"""flowstage-sample: the example plugin of ``docs/plugins.md``.

``plugin`` holds the hooks; the rest is imported by them on first use, so installing
this package costs the ``flowstage`` command next to nothing.
"""

__version__ = "0.1.0"
