"""Recording a run never changes its outcome: an input that refers to itself, or a disk
that fills up while the result is written, leaves the run as it went, a history row
that says what was not kept, and no temporary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstage import run_workflow
from flowstage.state.store import get_store

WORKFLOW = """\
kind: workflow
metadata: {name: loop}
spec:
  stages:
    - name: only
      target: teststages.state.count_items
"""


def test_an_input_that_refers_to_itself_keeps_the_run_and_its_row(tmp_path: Path) -> None:
    # The CLI refuses such a YAML input file before anything runs (tests/test_hostile_input);
    # from Python a list holding itself reaches the recorder.
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    loop: list[object] = []
    loop.append(loop)
    assert run_workflow(str(tmp_path / "wf.yaml"), {"loop": loop}) == 1
    rows, _ = get_store().list_runs(limit=0, workflow="loop")
    assert [r["state"] for r in rows] == ["finished"]
    row = get_store().find_run(rows[0]["id"])
    assert "input not kept" in str(row["input"]) and "Circular reference" in str(row["input"])


@pytest.fixture
def small_disk(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An app dir on a 1 MiB tmpfs."""
    monkeypatch.setenv("FLOWSTAGE_HOME", str(small_tmpfs))
    return small_tmpfs


def test_a_full_disk_while_writing_the_result_keeps_the_run_and_its_row(
    small_disk: Path,
) -> None:
    wf = {
        "metadata": {"name": "big"},
        "spec": {"stages": [{"name": "only", "target": "teststages.state.numbers_up_to"}]},
    }
    run = run_workflow(wf, {"n": 400_000}, return_run=True)  # a pickle of about 2 MB
    assert run.state == "finished" and len(run.result) == 400_000
    row = get_store().find_run(run.id)
    assert row["state"] == "finished"
    assert row["result_kind"] == "missing" and "No space left on device" in row["result"]
    assert [p.name for p in (small_disk / "results").iterdir()] == []  # no partial .tmp
