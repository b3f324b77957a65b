"""Whole-process time of ``flowstage --help``: the plugins installed now vs ten more.

Discovery must not slow the command line down: with ten extra plugins installed,
``flowstage --help`` should stay under 0.4 s (issue 3). The extra plugins are real
distributions (wheels built here, installed with pip) in a temporary virtual
environment that also sees this interpreter's packages, so this environment is left
untouched. Both variants run in such a child environment, so they pay the same
interpreter start-up.

    python benchmarks/bench_cli_startup.py [--runs 15] [--plugins 10] [--importtime]
        [--breakdown] [--check]

``--importtime`` prints the slowest imports of ``--help`` with the extra plugins
(``python -X importtime``); ``--breakdown`` times the import steps of ``--help`` one by one;
``--check`` exits 1 when the median misses the target.

stevedore keeps an on-disk cache of entry points but turns it off when the interpreter
lives under ``/tmp``; the child environments are made under ``~/.cache`` (``--workdir``
to choose) so that the numbers are those of a usual installation.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

TARGET_SECONDS = 0.4

PLUGIN_MODULE = '''"""Trivial flowstage plugin {index}: a stage type, a command and no workflows."""

from flowstage import hookimpl


@hookimpl
def flowstage_register_stage_types(registry):
    from flowstage.core.stage_types import StageType

    class Noop{index}(StageType):
        name = "noop{index}"

    registry.add(Noop{index})


@hookimpl
def flowstage_register_commands(app):
    def command() -> None:
        """Do nothing ({index})."""

    app.command("bench-noop-{index}")(command)


@hookimpl
def flowstage_workflow_paths():
    return []
'''


def build_wheel(folder: Path, index: int) -> Path:
    """A pure-Python wheel ``flowstage-bench-N`` with one entry point in ``flowstage.plugins``."""
    name, version = f"flowstage_bench_{index}", "1.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": PLUGIN_MODULE.format(index=index),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: flowstage-bench-{index}\nVersion: {version}\n"
            "Summary: trivial flowstage plugin for benchmarks\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bench_cli_startup\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": f"[flowstage.plugins]\nbench{index} = {name}\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def make_child_env(where: Path) -> Path:
    """A virtual environment whose site-packages also load this interpreter's; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    child_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # "import" lines of a .pth run at start-up; addsitedir also processes the parent's .pth
    # files (an editable install of flowstage is one).
    lines = [f"import site; site.addsitedir({p!r})" for p in parents]
    Path(child_site, "_parent_env.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def console_script(python: Path) -> list[str]:
    """``flowstage`` as the installed console script would run it, from ``python``'s env."""
    return [
        str(python),
        "-c",
        "import sys; sys.argv[0] = 'flowstage'; from flowstage.cli.main import main; main()",
    ]


def time_runs(
    commands: dict[str, list[str]],
    runs: int,
    env: dict[str, str],
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds per run of each command (and CPU seconds into ``cpu``). The commands
    take turns, so that a change in the machine's load affects them alike."""
    for command in commands.values():
        for _ in range(2):  # warm the OS file cache and stevedore's entry-point cache
            subprocess.run(command, capture_output=True, env=env, check=True)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            used = _children_cpu()
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, env=env, check=True)
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(_children_cpu() - used)
    return times


def _children_cpu() -> float:
    """CPU seconds (user + system) used by finished child processes so far."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def entry_point_count(python: Path, env: dict[str, str]) -> int:
    probe = "import importlib.metadata as m; print(len(m.entry_points(group='flowstage.plugins')))"
    return int(
        subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, env=env, check=True
        ).stdout
    )


def slowest_imports(
    command: list[str], env: dict[str, str], count: int = 15
) -> list[tuple[int, str]]:
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:count]


#: cumulative import steps of ``flowstage --help``, in the order the command meets them
BREAKDOWN = [
    ("interpreter", "pass"),
    ("typer (the CLI framework)", "import typer.main"),
    ("flowstage package: run context, pluggy, logging", "import flowstage"),
    ("stevedore + importlib.metadata (discovery)", "import stevedore, importlib.metadata"),
    ("pydantic (BaseModel)", "import pydantic.main"),
    ("flowstage.core.settings (models)", "import flowstage.core.settings"),
    ("asyncio + concurrent.futures (executor modules)", "import asyncio, concurrent.futures"),
    (
        "core.object_store + core.calls (executor modules)",
        "import flowstage.storage.object_store, flowstage.core.calls",
    ),
    (
        "built-in plugin modules (executors, stage types)",
        (
            "import flowstage.executors.local, flowstage.executors.dask.executor, "
            "flowstage.executors.ray.executor, flowstage.plugins.stage_types"
        ),
    ),
]


def breakdown(python: Path, runs: int, env: dict[str, str]) -> None:
    """Median whole-process time of each cumulative import step; the difference between
    steps is what that step adds to ``--help``."""
    statements: list[str] = []
    commands: dict[str, list[str]] = {}
    for label, statement in BREAKDOWN:
        statements.append(statement)
        commands[label] = [str(python), "-c", "; ".join(statements)]
    commands["flowstage --help (everything)"] = [*console_script(python), "--help"]
    times = time_runs(commands, runs, env)
    print("\nwhere the time goes (cumulative steps, median seconds; + what the step adds):")
    previous = 0.0
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:<52} {median:.3f}  {median - previous:+.3f}")
        previous = median


def summary(times: list[float]) -> str:
    return f"{min(times):.3f} / {statistics.median(times):.3f} / {statistics.fmean(times):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--plugins", type=int, default=10, help="extra trivial plugins to install")
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "flowstage-bench")
    parser.add_argument(
        "--importtime", action="store_true", help="show the slowest imports with the extra plugins"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time the import steps of --help one by one"
    )
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if the median exceeds {TARGET_SECONDS} s"
    )
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cli-startup-", dir=args.workdir))
    try:
        home = work / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE")}
        env["FLOWSTAGE_HOME"] = str(home)

        plain = make_child_env(work / "plain")
        extra = make_child_env(work / "extra")
        wheels = [build_wheel(work, i) for i in range(args.plugins)]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(extra),
                "install",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                *map(str, wheels),
            ],
            check=True,
        )

        command = ["--help"]
        shown = subprocess.run(
            [*console_script(extra), *command], capture_output=True, text=True, env=env, check=True
        ).stdout
        missing = [i for i in range(args.plugins) if f"bench-noop-{i}" not in shown]
        if missing:
            raise SystemExit(
                f"the extra plugins {missing} did not load: their commands are not in --help"
            )
        cpu: dict[str, list[float]] = {}
        times = time_runs(
            {
                "floor": [str(plain), "-c", "pass"],
                "base": [*console_script(plain), *command],
                "more": [*console_script(extra), *command],
            },
            args.runs,
            env,
            cpu,
        )
        base, more = times["base"], times["more"]
        base_eps = entry_point_count(plain, env)
        more_eps = entry_point_count(extra, env)

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"flowstage --help, whole process, {args.runs} runs each (load average {load:.1f} "
            f"on {os.cpu_count()} CPUs)"
        )
        print(f"  {'':<42} {'wall: min / median / mean':<26} CPU median")
        rows = [
            ("python -c pass (interpreter floor)", "floor"),
            (f"installed plugins ({base_eps} entry points)", "base"),
            (f"+ {args.plugins} trivial plugins ({more_eps} entry points)", "more"),
        ]
        for label, key in rows:
            print(f"  {label:<42} {summary(times[key]):<26} {statistics.median(cpu[key]):.3f}")
        added = statistics.median(more) - statistics.median(base)
        print(
            f"  cost of the extra plugins (median): {added * 1000:+.1f} ms "
            f"({added * 1000 / max(1, args.plugins):+.2f} ms per plugin)"
        )
        ok = statistics.median(more) < TARGET_SECONDS
        print(
            f"target: median with the extra plugins < {TARGET_SECONDS} s: "
            f"{'met' if ok else 'MISSED'}"
            + ("" if ok or load < 1 else " (on a busy machine: compare the CPU column)")
        )
        if str(extra).startswith("/tmp"):
            print(
                "note: the environment lives under /tmp, where stevedore's entry-point cache is off"
            )
        if args.importtime:
            print("\nslowest imports with the extra plugins (cumulative microseconds):")
            for micros, name in slowest_imports([*console_script(extra), *command], env):
                print(f"  {micros:8d}  {name}")
        if args.breakdown:
            breakdown(plain, args.runs, env)
        return 0 if ok or not args.check else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
