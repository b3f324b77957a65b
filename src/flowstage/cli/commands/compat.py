"""``flowstage compat flowdapt install|uninstall|status``: the opt-in ``flowdapt``
import name (see :mod:`flowstage.compat.hook`)."""

from __future__ import annotations

from pathlib import Path

import typer

from flowstage.core.errors import UserError

SITE_DIR = typer.Option(
    None, "--site-packages", help="Another site-packages folder (default: this environment's)."
)


def install(site_dir: Path | None = SITE_DIR) -> None:
    """Make `import flowdapt` give flowstage's compatibility layer in this environment
    (every process of it, workers too); refused when the real Flowdapt is installed."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.compat import hook

    try:
        path = hook.write_pth(site_dir)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # a read-only or someone else's site-packages
        where = hook.pth_path(site_dir)
        msg = f"cannot write {where}: {exc.strerror or exc} (try --site-packages DIR)"
        raise UserError(msg) from None
    typer.echo(f"installed {path}: `import flowdapt` now gives {hook.TARGET}")


def uninstall(site_dir: Path | None = SITE_DIR) -> None:
    """Remove the `flowdapt` import name from this environment."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.compat import hook

    path = hook.pth_path(site_dir)
    try:
        removed = hook.remove_pth(site_dir)
    except OSError as exc:
        raise UserError(f"cannot remove {path}: {exc.strerror or exc}") from None
    if removed:
        typer.echo(f"removed {path}")
    else:
        typer.echo(f"not installed ({path} does not exist)")


def status(site_dir: Path | None = SITE_DIR) -> None:
    """Whether the `flowdapt` import name is installed, and what it gives."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.compat import hook

    for key, value in hook.status(site_dir).items():
        typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    """Add the ``compat flowdapt`` commands (``install``, ``uninstall``, ``status``) to ``app``."""
    compat_app = typer.Typer(help="Compatibility layers for other frameworks' code.")
    flowdapt_app = typer.Typer(
        help="`import flowdapt` for unchanged Flowdapt plugins: install, uninstall, status.",
        no_args_is_help=True,
    )
    flowdapt_app.command()(install)
    flowdapt_app.command()(uninstall)
    flowdapt_app.command()(status)
    compat_app.add_typer(flowdapt_app, name="flowdapt")
    app.add_typer(compat_app, name="compat")
