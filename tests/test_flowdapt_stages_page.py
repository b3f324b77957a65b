"""The examples of Flowdapt's "Stages" documentation page, run through the compatibility
layer (issue 15): its workflows and stage functions as the page prints them, with their
``flowdapt`` imports, give the behaviour the page describes.

Where the page's code cannot run as printed, the smallest fix is made and marked ``FIX``
(an import it forgot, a helper it leaves to the reader, a typo that is a syntax error).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flowstage import run_workflow
from flowstage.core import targets

pd = pytest.importorskip("pandas")  # the page's create_city_list builds a DataFrame

# --- the page's stage functions ----------------------------------------------------------

#: ``user_modules/testing_stuff.py``: "Defining Stages" and "Stage Arguments"
TESTING_STUFF = """
from flowdapt.compute.resources.workflows.context import get_run_context
from flowdapt.lib.logger import get_logger  # FIX: the page uses `logger` without making it

logger = get_logger(__name__)


def test_stage(n_vals: int) -> list:
    return list(range(n_vals))


def next_stage(rand_array: list) -> None:
    logger.info(f"Got list from test_stage: {rand_array}")


def input_from_context() -> int:
    # the page's "config.input" hint, as the page spells it
    n_vals = get_run_context().config.input["n_vals"]
    return n_vals
"""

#: ``flowdapt_nowcast_plugin/stages.py``: "Parameterizing Stages" and "Accessing the
#: Workflow definition inside Stages"
NOWCAST_STAGES = '''
from typing import Any  # FIX: the page's annotation uses Any without importing it

import pandas as pd

from flowdapt.compute.resources.workflows.context import get_run_context
# FIX: the page writes `import get_run_context()`, a syntax error
from flowdapt.compute.resources.workflow.context import get_run_context as context_too


def get_city_grid(n_cities, neighbors, city_data_path):  # FIX: the page leaves it out
    names = ["Oslo", "Lima", "Kyiv", "Pune"][:n_cities]
    return pd.DataFrame({"city": names, "lat": [60.0] * len(names), "long": [10.0] * len(names)})


def create_city_list() -> dict[str, Any]:
    """
    STAGE
    Creates a city list for the subsequent stage to use for parameterization
    """

    # Note: Stages can access the Workflow information from the Run Context
    data_config = get_run_context().config.data_config

    df_cities = get_city_grid(
      data_config["n_cities"],
      data_config["neighbors"],
      data_config["city_data_path"]
    )

    # Convert the DataFrame to a list of dictionaries
    # schema: [{"city": "city_name"}, {"lat": latitude}, {"long": longitude}]
    cities_list = df_cities.to_dict(orient='records')

    return cities_list


def fetch_city_data(city_dict: dict):
    city = city_dict["city"]
    print(f"Fetching data for {city}")  # FIX: the page leaves the f-string unclosed
    return city  # FIX: the page returns nothing; the city shows which item ran


def process_city_data(city):  # FIX: the page names this stage but does not show it
    return city.upper()


def print_study():
  context = context_too()
  config = context.config
  print(config["study_identifier"])
'''

# --- the page's workflows ----------------------------------------------------------------

CHAIN = """
kind: workflow
metadata:
  name: test_workflow
  annotations:
    group: test
spec:
  stages:
    - name: test_stage
      target: user_modules.testing_stuff.test_stage

    - name: next_stage
      target: user_modules.testing_stuff.next_stage
      depends_on:
        - test_stage
"""

BUILD_FEATURES = """
kind: workflow
metadata:
  name: build_features
  annotations:
    group: nowcast
spec:
  stages:
    - name: create_city_list
      target: flowdapt_nowcast_plugin.stages.create_city_list

    - target: flowdapt_nowcast_plugin.stages.fetch_city_data
      name: fetch_city_data
      type: parameterized
      depends_on:
          create_city_list

    - target: flowdapt_nowcast_plugin.stages.process_city_data
      name: process_city_data
      type: parameterized
      depends_on:
      - fetch_city_data
"""

CONFIG = {
    "study_identifier": "nowcast-study",
    "data_config": {"n_cities": 3, "neighbors": 2, "city_data_path": "cities.csv"},
}


@pytest.fixture
def page_modules(app_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The page's modules: ``user_modules.testing_stuff`` in the app directory, and a
    ``flowdapt_nowcast_plugin`` package on the import path; gone from ``sys.modules``
    after the test (other tests import the examples' ``user_modules.testing_stuff``)."""
    user_modules = app_home / "user_modules"
    user_modules.mkdir()
    (user_modules / "testing_stuff.py").write_text(TESTING_STUFF, encoding="utf-8")
    package = tmp_path / "plugin" / "flowdapt_nowcast_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stages.py").write_text(textwrap.dedent(NOWCAST_STAGES), encoding="utf-8")
    monkeypatch.syspath_prepend(str(package.parent))
    prefixes = ("flowdapt_nowcast", "user_modules")
    for name in [m for m in sys.modules if m.startswith(prefixes)]:
        monkeypatch.delitem(sys.modules, name)
    # targets resolve once per process, by name; the page's names are the examples' too
    monkeypatch.setattr(targets, "_resolved", {})
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(prefixes)]:
        del sys.modules[name]  # the page's own; monkeypatch then puts back what was there


def test_depends_on_passes_the_return_value_on(
    page_modules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``next_stage`` gets ``test_stage``'s list as ``rand_array`` (the input goes to the
    first stage: here ``n_vals``)."""
    import logging

    with caplog.at_level(logging.INFO):
        run = run_workflow(yaml.safe_load(CHAIN), {"n_vals": 10}, return_run=True)
    assert run.state == "finished"
    assert "Got list from test_stage: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in caplog.text


def test_flowctl_style_input_reaches_the_first_stage_from_the_cli(page_modules: Path) -> None:
    """``flowctl run test_workflow --n_vals 5`` passes 5 to ``n_vals``; the page's hint:
    ``get_run_context().config.input["n_vals"]`` is the same value."""
    workflow = page_modules / "test_workflow.yaml"
    single = yaml.safe_load(CHAIN)
    single["spec"]["stages"] = single["spec"]["stages"][:1]
    workflow.write_text(yaml.safe_dump(single))

    def flowstage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowstage.cli", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    applied = flowstage("apply", "-p", str(workflow))
    assert applied.returncode == 0, applied.stderr
    ran = flowstage("run", "test_workflow", "--n_vals", "5", "--result-only", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [0, 1, 2, 3, 4]
    hint = {
        "metadata": {"name": "hint"},
        "spec": {
            "stages": [{"name": "read", "target": "user_modules.testing_stuff.input_from_context"}]
        },
    }
    assert run_workflow(hint, {"n_vals": 5}) == 5


def test_parameterized_stages_run_once_per_city(
    page_modules: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``create_city_list`` reads ``config.data_config`` from the run context and returns
    records; ``fetch_city_data`` runs once per record and ``process_city_data`` once per
    fetched value."""
    result = run_workflow(yaml.safe_load(BUILD_FEATURES), config=CONFIG)
    assert result == ["OSLO", "LIMA", "KYIV"]
    printed = capfd.readouterr().out
    for city in ("Oslo", "Lima", "Kyiv"):
        assert f"Fetching data for {city}" in printed


def test_map_on_a_payload_list(page_modules: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ "Mapping on Values": ``map_on: payload_cities`` runs the stage once per item of the
    input list of that name."""
    wf = {
        "kind": "workflow",
        "metadata": {"name": "payload"},
        "spec": {
            "stages": [
                {
                    "name": "fetch_city_data",
                    "target": "flowdapt_nowcast_plugin.stages.fetch_city_data",
                    "type": "parameterized",
                    "map_on": "payload_cities",
                }
            ]
        },
    }
    cities = [{"city": "Oslo"}, {"city": "Pune"}]
    assert run_workflow(wf, {"payload_cities": cities}) == ["Oslo", "Pune"]
    assert "Fetching data for Pune" in capfd.readouterr().out


def test_the_run_context_gives_the_workflow_config(
    page_modules: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ "Accessing the Workflow definition inside Stages": ``get_run_context().config``
    from ``flowdapt.compute.resources.workflow.context`` (the page's other spelling)."""
    wf = {
        "metadata": {"name": "context"},
        "spec": {
            "stages": [{"name": "show", "target": "flowdapt_nowcast_plugin.stages.print_study"}]
        },
    }
    run_workflow(wf, config=CONFIG)
    assert "nowcast-study" in capfd.readouterr().out
