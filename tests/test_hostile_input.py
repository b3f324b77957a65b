"""Hostile and broken input through the real CLI: a clear error and exit 2, never a
traceback, and never unbounded memory or time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstage.cli.main import run_cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "examples" / "test_workflow.yaml")


def flowstage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: ``(exit code, stdout, stderr)``."""
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" document: 9 values, each level repeating the one before 9 times."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_input_file_is_refused_fast(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1024
    started = time.monotonic()
    code, _, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(path), "-q")
    assert time.monotonic() - started < 5
    assert code == 2, err
    assert f"error: {path}: not valid YAML" in err
    assert "aliases expand this document by more than 100,000 values" in err


def test_alias_bomb_in_apply_is_refused_fast(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "kind: config\nmetadata: {name: bomb}\nspec:\n  data:\n"
        + "".join(f"    {line}\n" for line in alias_bomb().splitlines())
    )
    started = time.monotonic()
    code, _, err = flowstage(capsys, "apply", "-p", str(path))
    assert time.monotonic() - started < 5
    assert code == 2, err
    assert f"{path}: not valid YAML" in err and "aliases expand" in err


def test_recursive_alias_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("loop: &l [*l]\n")
    code, _, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(path), "-q")
    assert code == 2, err
    assert f"{path}: not valid YAML (line 1, column 7): an alias refers to a node" in err


def test_a_few_aliases_still_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "in.yaml"
    path.write_text("base: &n 4\nn_vals: *n\n")
    code, out, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(path), "-q")
    assert code == 0, err
    assert out.strip() == "6"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"kind: workflow\nmetadata: {name: caf\xe9}\n",
            "expected a YAML file in UTF-8 text, found byte 0xe9",
        ),
        (b"[" * 5000, "not valid YAML (line 1, column 101): nested more than 100 levels deep"),
        (b"a: " + b"{b: " * 3000, "not valid YAML (line 1, column 397): nested more than 100"),
    ],
    ids=["not-utf8", "deep-list", "deep-mapping"],
)
def test_unreadable_workflow_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(content)
    for command in (["validate", str(path)], ["run", str(path), "-q"]):
        code, _, err = flowstage(capsys, *command)
        assert code == 2, err
        assert f"error: {path}: {message}" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"n_vals: \xff\xfe\n"), "expected an input file in UTF-8 text"),
        (lambda p: p.mkdir(), "expected an input file, found a folder"),
        (lambda p: None, "no such file"),
    ],
    ids=["not-utf8", "folder", "missing"],
)
def test_unreadable_input_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: object, message: str
) -> None:
    path = tmp_path / "in.yaml"
    make(path)  # type: ignore[operator]
    code, _, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(path), "-q")
    assert code == 2, err
    assert f"error: {path}: {message}" in err


@pytest.mark.parametrize("kind", ["not-utf8", "folder"])
def test_unreadable_settings_file_exits_2(
    capsys: pytest.CaptureFixture[str], app_home: Path, kind: str
) -> None:
    path = app_home / "settings.yaml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"executor:\n  name: l\xf6cal\n")
    found = "found a folder" if kind == "folder" else "in UTF-8 text, found byte 0xf6"
    for command in (["config", "show"], ["run", WORKFLOW, "--n_vals", "1", "-q"]):
        code, _, err = flowstage(capsys, *command)
        assert code == 2, err
        assert f"error: {path}: expected a settings file" in err and found in err


def test_duplicate_keys_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "kind: workflow\nmetadata: {name: dup}\nspec:\n  stages:\n"
        "    - name: a\n      target: teststages.basic.one\n      target: teststages.basic.double\n"
    )
    for command in (["validate", str(workflow)], ["apply", "-p", str(workflow)]):
        code, _, err = flowstage(capsys, *command)
        assert code == 2, err
        assert (
            f"error: {workflow}: not valid YAML (line 7, column 7): duplicate key 'target'" in err
        )
    inputs = tmp_path / "in.json"
    inputs.write_text('{"n_vals": 1,\n "n_vals": 2}')
    code, _, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(inputs), "-q")
    assert code == 2, err
    assert f"error: {inputs}: not valid YAML (line 2, column 2): duplicate key 'n_vals'" in err


def test_merge_keys_may_be_overridden(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "in.yaml"
    path.write_text("base: &b {n_vals: 2}\n<<: *b\nn_vals: 4\n")
    code, out, err = flowstage(capsys, "run", WORKFLOW, "--input-file", str(path), "-q")
    assert code == 0, err
    assert out.strip() == "6"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--a.b", "1", "--a", "2"],
            "input flag --a: 'a' already holds keys given by --a.KEY flags",
        ),
        (
            ["--l[]", "x", "--l", "y"],
            "input flag --l: 'l' already holds a list given by --l[] flags; "
            "give every item as --l[] VALUE",
        ),
        (
            ["--p.l[]", "x", "--p.l=y"],
            "input flag --p.l: 'p.l' already holds a list given by --p.l[] flags",
        ),
    ],
    ids=["mapping", "list", "nested-list"],
)
def test_a_flag_that_would_drop_others_is_refused(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    for command in ("run", "validate"):
        code, _, err = flowstage(capsys, command, WORKFLOW, "--n_vals", "1", *flags)
        assert code == 2, err
        assert f"error: {message}" in err


def workflow_of(tmp_path: Path, target: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"kind: workflow\nmetadata: {{name: w}}\nspec:\n  stages:\n"
        f"    - {{name: s, target: teststages.inputs.{target}}}\n"
    )
    return str(path)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_numbers_print_as_valid_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    workflow = workflow_of(tmp_path, "unannotated")
    code, out, err = flowstage(capsys, "run", workflow, f"--n={text}", "--format", "json", "-q")
    assert code == 0, err
    assert json.loads(out) is None
    code, out, err = flowstage(capsys, "run", workflow, f"--n={text}", "--format", "yaml", "-q")
    assert code == 0, err
    assert out.split()[0] in (".nan", ".inf", "-.inf")


@pytest.mark.parametrize("text", ["123", "007", "yes", "null", "1e5", "nan", "0.50"])
def test_a_str_parameter_gets_the_text_as_typed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    workflow = workflow_of(tmp_path, "texts")
    args = ["--code", text, "--count", "007", "--ratio", "0.50", "--flag", "yes"]
    code, out, err = flowstage(capsys, "run", workflow, *args, "--format", "json", "-q")
    assert code == 0, err
    assert json.loads(out) == {"code": text, "count": 7, "ratio": 0.5, "flag": True}
    code, _, err = flowstage(capsys, "validate", workflow, "--code", text)
    assert code == 0, err


def test_cli_values_keep_their_text_only_where_wanted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def result(target: str, *args: str) -> object:
        code, out, err = flowstage(
            capsys, "run", workflow_of(tmp_path, target), *args, "--format", "json", "-q"
        )
        assert code == 0, err
        return json.loads(out)

    assert result("unannotated", "--n", "007") == 7
    assert result("unannotated", "--n", "yes") is True
    assert result("optional_text", "--code", "null") is None
    assert result("optional_text", "--code", "007") == "007"
    assert result("listed", "--codes[]", "007", "--codes[]", "x") == ["007", "x"]
    assert result("echo", "--n", "007", "--other", "yes") == {"n": 7, "other": True}


def test_flowstage_home_that_is_a_file_exits_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    env = {**os.environ, "FLOWSTAGE_HOME": str(home)}
    for command in (["run", WORKFLOW, "--n_vals", "2", "-q"], ["plugins"]):
        done = subprocess.run(
            [sys.executable, "-m", "flowstage", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert f"error: FLOWSTAGE_HOME={home}: expected the app directory" in done.stderr


def test_an_overlong_plugin_name_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = flowstage(capsys, "plugins", "new", "a" * 300, "--dir", str(tmp_path))
    assert code == 2, err
    assert (
        "error: plugin name 'aaaaaaaaaaaaaaaaaaaa'...: expected at most 64 characters, got 300"
        in err
    )
    assert list(tmp_path.iterdir()) == []
    code, _, err = flowstage(capsys, "plugins", "new", "a" * 64, "--dir", str(tmp_path))
    assert code == 0, err
