"""The core never imports an engine: importing every core module leaves Dask and Ray out."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import flowstage.core


def test_importing_the_core_and_the_api_loads_no_engine() -> None:
    modules = [f"flowstage.core.{m.name}" for m in pkgutil.iter_modules(flowstage.core.__path__)]
    code = (
        f"import sys, importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        "import flowstage, flowstage.artifacts\n"
        "flowstage.run_workflow, flowstage.object_store, flowstage.load_workflow\n"
        "print(sorted(m for m in ('dask', 'distributed', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(modules) > 15
