"""``flowstage`` run the way a user runs it, for the tests: the console script in a
subprocess, its output captured as text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: the console script of the interpreter running the tests
FLOWSTAGE = str(Path(sys.executable).with_name("flowstage"))


def cli(
    *args: str,
    cwd: Path | str | None = None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``flowstage ARGS`` in a subprocess; a non-zero exit is returned, not raised.

    :param env: variables set over this process's environment
    """
    return subprocess.run(
        [FLOWSTAGE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
