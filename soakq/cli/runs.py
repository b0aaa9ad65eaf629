"""Run commands: status, watch, runs, cancel, export, prune (Redis when configured, else
artifacts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from soakq.cli.params import PATH
from soakq.errors import InputError, UserError

WATCH_TIMEOUT_S = (1.0, 30 * 86_400.0)

RunIdArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN_ID",
        help="The run's id, as `soakq submit` printed it; `soakq runs` lists them.",
    ),
]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        parser=PATH,
        help="Artifacts root directory.  [default: SOAKQ_ARTIFACTS_DIR or ./artifacts]",
    ),
]


def _checked(command: str, run_id: str) -> str:
    """The RUN_ID argument, refused (exit 2) as the user typed it unless it is a run id."""
    from soakq.config import check_run_id

    return check_run_id(run_id, what=f"{command}: run id")


def _local_record(root: Path, run_id: str) -> dict[str, Any]:
    from soakq.artifacts import run_dir
    from soakq.jsonio import read_json

    path = run_dir(root, run_id) / "RUN.json"
    if not path.exists():
        raise InputError(f"run {run_id!r}: no {path} (and SOAKQ_REDIS_URL is not set)")
    doc: dict[str, Any] = read_json(path)
    return doc


def register(app: typer.Typer, handles_errors: Callable[[Any], Any]) -> None:
    @app.command()
    @handles_errors
    def status(
        run_id: RunIdArg,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print the run's RUN.json document (the same embedded and distributed).",
            ),
        ] = False,
        artifacts: ArtifactsOpt = None,
    ) -> None:
        """Show a run's status."""
        from soakq.cli.main import _artifacts, _settings
        from soakq.jsonio import dumps

        _checked("status", run_id)
        settings = _settings()
        if settings.redis_url:
            from soakq.cli.distributed import status_distributed

            raise typer.Exit(status_distributed(settings, run_id, as_json=as_json))
        from soakq.checkpoint import local_run

        root = _artifacts(settings, artifacts)
        doc = _local_record(root, run_id)
        if as_json:
            print(dumps(doc), end="")
            return
        view = local_run(root, doc)
        print(
            f"run {run_id}: {view.status} ({view.completed}/{view.planned} iterations, "
            f"release gate {view.release_gate or 'none'})"
        )
        if view.status == "interrupted":
            print(f"resume it with `soakq resume {run_id}`")

    @app.command()
    @handles_errors
    def watch(
        run_id: RunIdArg,
        timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 86_400.0,
    ) -> None:
        """Follow a distributed run until it ends; exit with its code."""
        from soakq.cli.main import _settings
        from soakq.config import check_number

        _checked("watch", run_id)
        check_number("--timeout", timeout, *WATCH_TIMEOUT_S, unit=" seconds")
        settings = _settings()
        if not settings.redis_url:
            raise UserError(
                "watch follows distributed runs: set SOAKQ_REDIS_URL "
                "(embedded runs are followed by `soakq submit` itself)"
            )
        from soakq.cli.distributed import follow

        raise typer.Exit(follow(settings, run_id, timeout_s=timeout))

    @app.command()
    @handles_errors
    def runs(artifacts: ArtifactsOpt = None) -> None:
        """List runs (from Redis when configured, else from the artifacts directory)."""
        from soakq.cli.main import _artifacts, _settings
        from soakq.cli.output import RUN_COLUMNS, print_table, run_row
        from soakq.jsonio import read_json

        settings = _settings()
        if settings.redis_url:
            from soakq.cli.distributed import list_distributed

            raise typer.Exit(list_distributed(settings))
        from soakq.checkpoint import local_run

        root = _artifacts(settings, artifacts)
        soak = root / "soak"
        rows = []
        for p in sorted(soak.glob("*/RUN.json")) if soak.exists() else []:
            if p.parent.is_symlink():  # `latest`
                continue
            doc = read_json(p)
            view = local_run(root, doc)  # an embedded run whose process is gone: interrupted
            rows.append(run_row({**doc, "status": view.status}, done=view.completed))
        print_table(RUN_COLUMNS, rows, right=("iterations",))

    @app.command()
    @handles_errors
    def cancel(run_id: RunIdArg) -> None:
        """Cancel a distributed run."""
        from soakq.cli.main import _settings

        _checked("cancel", run_id)
        settings = _settings()
        if not settings.redis_url:
            raise UserError("cancel needs SOAKQ_REDIS_URL (stop an embedded run with Ctrl-C)")
        from soakq.cli.distributed import cancel_distributed

        raise typer.Exit(cancel_distributed(settings, run_id))

    @app.command()
    @handles_errors
    def export(
        run_id: RunIdArg,
        artifacts: ArtifactsOpt = None,
    ) -> None:
        """Write a run's directory from its Redis record (byte-identical to the workers')."""
        from soakq.cli.main import _artifacts, _settings

        _checked("export", run_id)
        settings = _settings()
        if not settings.redis_url:
            raise UserError("export reads the Redis record: set SOAKQ_REDIS_URL")
        from soakq.cli.distributed import export_distributed

        raise typer.Exit(export_distributed(settings, run_id, _artifacts(settings, artifacts)))

    @app.command()
    @handles_errors
    def prune(
        older_than: Annotated[
            float,
            typer.Option(
                "--older-than",
                metavar="DAYS",
                min=0.0,
                max=36_500.0,
                show_default=False,
                help="Only runs that finished more than DAYS days ago (without prune they "
                "expire after SOAKQ_RETENTION_DAYS).  [default: 0, every finished run]",
            ),
        ] = 0.0,
    ) -> None:
        """Remove finished runs from Redis now (their artifacts on disk stay)."""
        from soakq.cli.main import _settings

        settings = _settings()
        if not settings.redis_url:
            raise UserError("prune removes runs from Redis: set SOAKQ_REDIS_URL")
        from soakq.cli.distributed import prune_distributed

        raise typer.Exit(prune_distributed(settings, older_than))
