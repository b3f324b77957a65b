"""``flowstage objects ls|get|rm``: the artifacts of a namespace, objects stored with
``strategy="artifact"`` (or by ``fallback``) among them."""

from __future__ import annotations

import sys

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.output import print_value
from flowstage.core.errors import ObjectNotFound, UserError

NAMESPACE_HELP = "Namespace of the artifacts (default: default)."


def ls(
    namespace: str = typer.Option("default", "--namespace", "-n", help=NAMESPACE_HELP),
    every: bool = typer.Option(False, "--all", "-A", help="Every namespace."),
    fmt: str = typer.Option("table", "--format", help="table, json or yaml."),
) -> None:
    """List artifacts: stored objects (their type, serializer and size) and file artifacts."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.storage.artifacts import list_artifacts

    check_format(fmt, ("table", "json", "yaml"))
    rows = [a.summary() for a in list_artifacts("*" if every else namespace)]
    if not rows and fmt == "table":
        where = "any namespace" if every else f"namespace {namespace!r}"
        typer.echo(f"no artifacts in {where}", err=True)
        return
    print_value(rows, fmt)


def get(
    name: str = typer.Argument(..., help="Artifact name (the object's key)."),
    namespace: str = typer.Option("default", "--namespace", "-n", help=NAMESPACE_HELP),
    file: str | None = typer.Option(
        None, "--file", "-f", help="Print this file of the artifact (raw bytes)."
    ),
    fmt: str = typer.Option("raw", "--format", help="json, yaml, table or raw."),
) -> None:
    """Print a stored object, one file of an artifact (--file), or an artifact's metadata and
    files."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.storage.artifacts import get_artifact
    from flowstage.storage.object_store import object_store

    check_format(fmt)
    try:
        artifact = get_artifact(name, namespace)
        if file is not None:
            try:
                data = artifact.read(file)
            except FileNotFoundError as exc:
                raise UserError(str(exc)) from None
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        if artifact.object_info:
            print_value(object_store.get(name, strategy="artifact", namespace=namespace), fmt)
            return
    except ObjectNotFound as exc:
        raise UserError(str(exc)) from None
    described = {
        "name": artifact.name,
        "namespace": artifact.namespace,
        "uri": artifact.uri,
        "metadata": artifact.metadata,
        "files": {f.name: f.size for f in artifact.list_files()},
    }
    print_value(described, fmt)


def rm(
    names: list[str] = typer.Argument(..., help="Artifact names (object keys) to remove."),
    namespace: str = typer.Option("default", "--namespace", "-n", help=NAMESPACE_HELP),
) -> None:
    """Remove artifacts (with their files and metadata)."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.storage.artifacts import remove_artifact

    missing = []
    for name in names:
        if remove_artifact(name, namespace):
            typer.echo(f"removed {name!r} from namespace {namespace!r}")
        else:
            missing.append(name)
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise UserError(
            f"no artifact {listed} in namespace {namespace!r} "
            f"(see `flowstage objects ls -n {namespace}`)"
        )


def register(app: typer.Typer) -> None:
    """Add the ``objects`` command group (``ls``, ``get``, ``rm``) to ``app``."""
    objects_app = typer.Typer(
        help="Artifacts and stored objects: ls, get, rm.", no_args_is_help=True
    )
    objects_app.command("ls")(ls)
    objects_app.command("get")(get)
    objects_app.command("rm")(rm)
    app.add_typer(objects_app, name="objects")
