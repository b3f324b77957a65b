"""Run retention: deleting ended runs from the history, with their result and log files.

``flowstage runs prune`` and ``flowstage delete run ID`` call these, and so does
``flowstage serve``, which applies ``store.run_retention`` at start and hourly. A
recorded run does not prune by itself: its end stays one cheap write, and what
disappears from the history, and when, is always the result of a command someone ran
(or of the service they set up).

A run that is still pending or running is never deleted. Rows go first, in one
transaction; the files follow. A crash in between leaves only files that no row names,
which nothing reads and the next prune of their runs cannot find: harmless leftovers.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from flowstage.core.errors import UnknownNameError, UserError
from flowstage.core.runs import ACTIVE_STATES
from flowstage.state.history import RunHistory
from flowstage.state.outputs import remove_outputs

_ENDED = "state NOT IN ('pending', 'running')"


def delete_run(store: RunHistory, run_id: str) -> str:
    """Delete one ended run (an id or a unique prefix); its full id.

    :raises UnknownNameError: no run has that id
    :raises UserError: the run is still pending or running
    """
    row = store.find_run(run_id)
    if row is None:
        raise UnknownNameError(f"no run {run_id!r} in the history (`flowstage runs` lists them)")
    if row["state"] in ACTIVE_STATES:
        msg = f"run {row['id']} is still {row['state']}: `flowstage runs cancel {row['id']}` first"
        raise UserError(msg)
    _delete(store, [row["id"]])
    return str(row["id"])


def prune_runs(
    store: RunHistory,
    *,
    older_than: float | None = None,
    keep: int | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Delete ended runs; the ids deleted (or, with ``dry_run``, that would be).

    :param older_than: seconds: runs that ended (or were created) longer ago than this
    :param keep: always keep this many of the newest runs; alone, prune all older ones
    Given both, a run goes when it is older than ``older_than`` and not among the newest
    ``keep``.
    """
    if older_than is None and keep is None:
        raise UserError("say which runs to prune: --older-than DURATION and/or --keep N")
    if keep is not None and keep < 0:
        raise UserError(f"--keep must be 0 or more, got {keep}")
    if not store.path.exists():
        return []
    conditions, params = [_ENDED], []
    if older_than is not None:
        cutoff = datetime.fromtimestamp(time.time() - older_than, timezone.utc).isoformat()
        conditions.append("COALESCE(finished_at, created_at) < ?")
        params.append(cutoff)
    if keep is not None:
        conditions.append("seq NOT IN (SELECT seq FROM runs ORDER BY seq DESC LIMIT ?)")
        params.append(str(keep))
    rows = store.query(f"SELECT id FROM runs WHERE {' AND '.join(conditions)}", tuple(params))
    ids = [str(r[0]) for r in rows]
    if ids and not dry_run:
        _delete(store, ids)
    return ids


def _delete(store: RunHistory, ids: list[str]) -> None:
    home = store.path.parent
    files: list[Path] = []
    with store.write() as conn:
        for start in range(0, len(ids), 500):  # SQLite limits the parameters of a statement
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found = conn.execute(
                f"SELECT result_kind, result, log_path FROM runs WHERE id IN ({marks}) "
                f"AND {_ENDED}",
                chunk,
            ).fetchall()
            for kind, result, log_path in found:
                if kind == "file" and result:
                    files.append(home / result)
                if log_path:
                    files.append(Path(log_path))
            conn.execute(f"DELETE FROM runs WHERE id IN ({marks}) AND {_ENDED}", chunk)
    for run_id in ids:
        remove_outputs(home, run_id)
    for path in files:
        if _inside(path, home):  # a row never makes us delete outside the app dir
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _inside(path: Path, home: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(home)
    return real.startswith(root + os.sep)
