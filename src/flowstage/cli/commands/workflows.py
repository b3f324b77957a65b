"""``flowstage validate`` and ``flowstage graph``: look at a workflow without running it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.inputs import parse_input_args

if TYPE_CHECKING:  # imported when a command runs: `flowstage --help` stays fast
    from flowstage.core.models import Workflow


def _load(path: str, run_input: dict[str, Any] | None = None) -> Workflow:
    """The workflow ``path`` names, validated; with ``run_input``, the input is checked."""
    from flowstage.runner.prepare import prepare_run

    return prepare_run(path, run_input, with_input=run_input is not None).workflow


def validate(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="Workflow file (or name) to check."),
) -> None:
    """Check a workflow (and, given --KEY VALUE inputs, the input) without running it."""
    run_input = parse_input_args(ctx.args)
    workflow = _load(path, run_input if ctx.args else None)
    stages = len(workflow.spec.stages)
    checked = " and its input" if ctx.args else ""
    typer.echo(
        f"ok: workflow {workflow.name!r} ({stages} stage{'s' * (stages != 1)}){checked} is valid"
    )


def graph(
    path: str = typer.Argument(..., help="Workflow file (or name)."),
    fmt: str = typer.Option("text", "--format", help="text, mermaid or dot (Graphviz)."),
) -> None:
    """Print the stage graph as text, Mermaid or Graphviz dot."""
    check_format(fmt, ("text", "mermaid", "dot"))
    typer.echo(render_graph(_load(path), fmt))


def render_graph(workflow: Workflow, fmt: str) -> str:
    from flowstage.core.dag import StageGraph

    stages = {s.name: s for s in workflow.spec.stages}
    graph = StageGraph({s.name: s.depends_on for s in workflow.spec.stages})
    order = graph.topological_order()
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        ids = {name: f"s{i}" for i, name in enumerate(order)}
        for name in order:
            shape = (
                f'{ids[name]}[["{name}"]]'
                if stages[name].type != "simple"
                else f'{ids[name]}["{name}"]'
            )
            lines.append(f"  {shape}")
        for name in order:
            lines.extend(f"  {ids[dep]} --> {ids[name]}" for dep in stages[name].depends_on)
        return "\n".join(lines)
    if fmt == "dot":
        lines = [f'digraph "{workflow.name}" {{', "  rankdir=TB;"]
        for name in order:
            shape = "box3d" if stages[name].type != "simple" else "box"
            lines.append(f'  "{name}" [shape={shape}];')
        for name in order:
            lines.extend(f'  "{dep}" -> "{name}";' for dep in stages[name].depends_on)
        lines.append("}")
        return "\n".join(lines)
    lines = [f"workflow {workflow.name} ({len(order)} stages)"]
    for name in order:
        stage = stages[name]
        kind = f" [{stage.type}" + (f" over input {stage.map_on!r}" if stage.map_on else "") + "]"
        deps = f"  <- {', '.join(stage.depends_on)}" if stage.depends_on else "  (root)"
        lines.append(f"  {name}{kind if stage.type != 'simple' else ''}{deps}")
    terminals = ", ".join(graph.terminals)
    lines.append(f"  result: {terminals}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        validate
    )
    app.command()(graph)
