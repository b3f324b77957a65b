"""Flowdapt's API, as real Flowdapt plugins use it, on flowstage.

Imported as ``flowdapt`` once ``flowstage compat flowdapt install`` has run (or
:func:`flowstage.compat.hook.install` in this process); never when the real
``flowdapt`` distribution is installed.
"""

__version__ = "0.1.52+flowstage"
