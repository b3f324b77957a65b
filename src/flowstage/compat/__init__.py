"""Compatibility layers: other frameworks' APIs implemented on flowstage's own.

:mod:`flowstage.compat.flowdapt` provides, under the import name ``flowdapt``, what real
Flowdapt plugins import (see ``docs/migrating-from-flowdapt.md``); the import name is
installed with ``flowstage compat flowdapt install`` (:mod:`flowstage.compat.hook`).
"""
