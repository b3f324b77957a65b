"""Part of the ``flowdapt`` compatibility package (see :mod:`flowstage.compat.flowdapt`)."""
