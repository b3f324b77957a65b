"""``type: batched``: a map whose target is called once per batch of items.

Vectorised code (numpy, a bulk database insert, a batch HTTP API) pays its per-call cost
once per batch instead of once per item::

    - name: squares
      target: my_package.stages.square_batch   # (batch: list) -> list, one result per item
      type: batched
      depends_on: [make_numbers]               # or map_on: an input key, as for parameterized
      options: {batch_size: 100}

The output is flat: one result per item, in item order. Inside the target,
``get_run_context().item_index`` is the batch's position.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import StageError
from flowstage.core.stage_types import ParameterizedStage, as_items

if TYPE_CHECKING:
    from flowstage.core.models import Stage
    from flowstage.core.scheduler import StageExecution
    from flowstage.core.targets import Signature

#: the keys a batched stage reads from ``options:``
OPTIONS = ("batch_size",)


class BatchedStage(ParameterizedStage):
    """Maps the target over batches of ``options.batch_size`` items.

    Root stages bind the run input exactly as ``parameterized`` does (``bind_input`` is
    inherited), so ``map_on`` works the same way.
    """

    name = "batched"

    def check(self, stage: Stage, signature: Signature) -> list[str]:
        problems: list[str] = []
        if stage.map_on is None and not stage.depends_on:
            problems.append("a batched stage without dependencies needs 'map_on' naming an input list to batch")
        wanted = len(stage.depends_on) + (1 if stage.map_on else 0)
        if not signature.accepts_positional(max(wanted, 1)):
            have = len(signature.positional)
            problems.append(f"key 'target': the function takes {have} positional parameters but is given "
                            f"{max(wanted, 1)} (the batch, then the other dependencies' outputs); add parameters")
        for key in stage.options:
            if key not in OPTIONS:
                close = difflib.get_close_matches(key, OPTIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"key 'options.{key}': unknown option of a batched stage{hint} "
                                f"(valid options: {', '.join(OPTIONS)})")
        size = stage.options.get("batch_size")
        if size is None:
            problems.append("key 'options.batch_size': a batched stage needs 'options: {batch_size: N}'")
        elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"key 'options.batch_size': expected a whole number of at least 1, got {size!r}")
        return problems

    async def execute(self, execution: StageExecution) -> Any:
        stage = execution.stage
        size = int(stage.options["batch_size"])
        if stage.map_on is not None:
            source = f"input key {stage.map_on!r}"
            value = execution.input[stage.map_on]
            extra = execution.dependencies
        else:
            source = f"the output of stage {stage.depends_on[0]!r}"
            value = await execution.fetch(execution.dependencies[0])
            extra = execution.dependencies[1:]
        items = as_items(value, stage.name, source)
        batches = [list(items[start:start + size]) for start in range(0, len(items), size)]
        results = await execution.map(batches, *extra, **execution.bound_input)
        # With allow_partial_failure, failed batches are left out of ``results``.
        dropped = {failure["index"] for failure in execution.record.failed_items}
        kept = [(number, batch) for number, batch in enumerate(batches) if number not in dropped]
        flat: list[Any] = []
        for (number, batch), result in zip(kept, results, strict=True):
            if isinstance(result, Mapping) or not isinstance(result, (list, tuple)) or len(result) != len(batch):
                shown = type(result).__name__
                if isinstance(result, (list, tuple)):
                    shown += f" of {len(result)} items"
                msg = (f"stage {stage.name!r}: batch {number} has {len(batch)} items but the target returned "
                       f"{shown}; a batched target returns a list with one result per item")
                raise StageError(msg, stage=stage.name, item_index=number)
            flat.extend(result)
        return flat
