"""Stage outputs kept for ``flowstage runs retry``, in the run's row and result files.

A run that fails or is cancelled (any run, with ``store.keep_outputs``) keeps the
outputs of its finished stages and the finished items of its failed maps. Each is
pickled: up to ``store.max_inline_result`` bytes it goes into the row's ``outputs``
column (the small ones of a run together, as one base64 pickle in the JSON, so that a
retry of a long chain decodes one value, not one per stage), up to
``store.max_result_size`` into a file under ``<app dir>/outputs/<run id>/``, removed
with the run; a bigger one is noted as missing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstage.core.appdir import create_private, private_dir

if TYPE_CHECKING:
    from flowstage.core.runs import Run
    from flowstage.core.settings import StoreSettings

#: the folder of the outputs' files, under the app directory
OUTPUTS_DIR = "outputs"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@dataclass
class KeptOutputs:
    """What a run kept for a retry."""

    #: how to find the workflow again (its file or name), None if it was given inline
    workflow: str | None = None
    #: the ``config=`` the run was given
    config: dict[str, Any] | None = None
    #: finished stages' outputs
    outputs: dict[str, Any] = field(default_factory=dict)
    #: finished items of maps that did not finish, by index
    items: dict[str, dict[int, Any]] = field(default_factory=dict)
    #: stages whose output was not kept or is gone, and why
    missing: dict[str, str] = field(default_factory=dict)
    #: the run kept its finished stages' outputs (false: it finished without keeping)
    kept: bool = False


def encode_outputs(run: Run, home: Path, settings: StoreSettings) -> str:
    """The ``outputs`` column of ``run`` (writing the files of its big outputs)."""
    stages: dict[str, Any] = {}
    # the small outputs, pickled: {stage: (whether it holds map items, pickle)}
    inline: dict[str, tuple[bool, bytes]] = {}
    entries = [(name, value, False) for name, value in (run.outputs or {}).items()]
    entries += [(name, items, True) for name, items in run.item_outputs.items()]
    for number, (name, value, items) in enumerate(entries):
        if name in stages or name in inline:
            continue
        entry = _encode(value, home, f"{run.id}/{number}.pkl", settings)
        if isinstance(entry, bytes):
            inline[name] = (items, entry)
        else:
            entry["items"] = items
            stages[name] = entry
    document = {
        "workflow": run.workflow_ref,
        "config": run.config,
        "kept": run.outputs is not None,
        "stages": stages,
    }
    if inline:
        bundle = pickle.dumps(inline, protocol=pickle.HIGHEST_PROTOCOL)
        document["inline"] = base64.b64encode(bundle).decode("ascii")
    return json.dumps(document, default=repr)


def _encode(value: Any, home: Path, name: str, settings: StoreSettings) -> bytes | dict[str, Any]:
    """``value`` pickled, if it is small enough to go into the row; else its entry (in
    a file, or missing and why)."""
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any object may refuse pickling its own way; try cloudpickle
        try:
            # lazy: cloudpickle is needed only for what plain pickle refuses
            import cloudpickle

            data = cloudpickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - an output that cannot be kept must not fail the run
            return {"kind": "missing", "reason": f"it cannot be pickled ({exc})"}
    if len(data) <= settings.max_inline_result:
        return data
    if len(data) > settings.max_result_size:
        limit = settings.max_result_size
        reason = f"its pickle is {len(data)} bytes, over store.max_result_size ({limit})"
        return {"kind": "missing", "reason": reason}
    relative = f"{OUTPUTS_DIR}/{name}"
    target = home / relative
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        private_dir(home / OUTPUTS_DIR)
        private_dir(target.parent)
        with os.fdopen(create_private(temporary, _NEW_FILE), "wb") as fh:
            fh.write(data)
        os.replace(temporary, target)
    except OSError as exc:  # a full disk: the run is still recorded, without this output
        with contextlib.suppress(OSError):
            temporary.unlink()
        return {"kind": "missing", "reason": f"writing {target} failed: {exc.strerror or exc}"}
    return {"kind": "file", "path": relative}


def load_outputs(row: dict[str, Any], home: Path) -> KeptOutputs:
    """What the run of ``row`` kept; every stage whose output cannot be read is in
    ``missing`` with the reason."""
    text = row.get("outputs")
    if not text:
        return KeptOutputs()
    document = json.loads(text)
    kept = KeptOutputs(document.get("workflow"), document.get("config"))
    kept.kept = bool(document.get("kept"))
    if document.get("inline"):
        _load_inline(document["inline"], kept)
    for name, entry in document.get("stages", {}).items():
        kind = entry.get("kind")
        if kind == "missing":
            kept.missing[name] = str(entry.get("reason"))
            continue
        try:
            if kind == "inline":  # one by one, as runs recorded before the bundle kept them
                value = pickle.loads(base64.b64decode(entry["data"]))
            else:
                with open(home / str(entry["path"]), "rb") as fh:
                    value = pickle.load(fh)
        except FileNotFoundError:
            kept.missing[name] = f"its file {home / str(entry['path'])} is gone"
            continue
        except Exception as exc:  # noqa: BLE001 - an unreadable output is reported, not raised
            kept.missing[name] = f"it cannot be read ({type(exc).__name__}: {exc})"
            continue
        _add(kept, name, bool(entry.get("items")), value)
    return kept


def _load_inline(text: str, kept: KeptOutputs) -> None:
    """Add the small outputs, bundled in ``text``, to ``kept`` (each that cannot be
    read to ``kept.missing``)."""
    # stage names, flags and bytes: the bundle loads as the JSON around it does
    bundle: dict[str, tuple[bool, bytes]] = pickle.loads(base64.b64decode(text))
    for name, (items, data) in bundle.items():
        try:
            value = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - an unreadable output is reported, not raised
            kept.missing[name] = f"it cannot be read ({type(exc).__name__}: {exc})"
            continue
        _add(kept, name, items, value)


def _add(kept: KeptOutputs, name: str, items: bool, value: Any) -> None:
    if items:
        kept.items[name] = {int(k): v for k, v in value.items()}
    else:
        kept.outputs[name] = value


def remove_outputs(home: Path, run_id: str) -> None:
    """Delete the output files of a run (the row goes with the run)."""
    if run_id and "/" not in run_id and run_id not in (".", ".."):
        shutil.rmtree(home / OUTPUTS_DIR / run_id, ignore_errors=True)
