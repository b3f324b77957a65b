"""``flowstage validate`` and ``flowstage graph``: look at a workflow without running it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from flowstage.cli.commands.common import check_format, input_from_args, load_workflow_arg
from flowstage.core.appdir import app_dir

if TYPE_CHECKING:  # imported when a command runs: `flowstage --help` stays fast
    from flowstage.core.models import Workflow


def validate(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="Workflow file (or name) to check."),
) -> None:
    """Check a workflow (and, given --KEY VALUE inputs, the input) without running it."""
    workflow = load_workflow_arg(path)
    run_input = input_from_args(ctx.args, workflow)
    if ctx.args:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.core.loading import check_input

        check_input(workflow, run_input, search_paths=(str(app_dir()),))
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
    typer.echo(render_graph(load_workflow_arg(path), fmt))


def render_graph(workflow: Workflow, fmt: str) -> str:
    # lazy: keeps `flowstage --help` fast (it imports every command module)
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
    """Add ``validate`` (it takes unknown ``--KEY VALUE`` options as inputs) and ``graph``
    to ``app``."""
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        validate
    )
    app.command()(graph)
