"""`soakq resume`: continue an interrupted embedded run, in this process or on the workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from soakq.cli.params import PATH
from soakq.errors import InputError


def register(app: typer.Typer, handles_errors: Callable[[Any], Any]) -> None:
    @app.command()
    @handles_errors
    def resume(
        run_id: Annotated[str, typer.Argument(help="The interrupted run (see `soakq runs`).")],
        artifacts: Annotated[
            Path | None,
            typer.Option(
                parser=PATH,
                help="Artifacts root [default: SOAKQ_ARTIFACTS_DIR or ./artifacts].",
            ),
        ] = None,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait/--no-wait",
                help="On the workers: follow the run to its end (embedded: always).",
            ),
        ] = False,
    ) -> None:
        """Continue an interrupted embedded run from its last committed iteration: embedded,
        or handed to the workers when SOAKQ_REDIS_URL is set. It ends with the files the
        uninterrupted run writes (docs/resume.md)."""
        from soakq.artifacts import run_dir
        from soakq.checkpoint import committed_docs, local_run, read_checkpoint
        from soakq.cli.main import _artifacts, _settings
        from soakq.config import check_run_id
        from soakq.jsonio import read_json
        from soakq.states import RunStatus

        settings = _settings()
        root = _artifacts(settings, artifacts)
        check_run_id(run_id, what="resume: run id")
        directory = run_dir(root, run_id)
        if not (directory / "RUN.json").exists():
            raise InputError(
                f"run {run_id!r}: no {directory / 'RUN.json'}; `soakq runs` lists the runs "
                "under this artifacts root (--artifacts chooses another)"
            )
        view = local_run(root, read_json(directory / "RUN.json"))
        if RunStatus(view.status).terminal:
            raise InputError(f"run {run_id}: it already ended ({view.status}); nothing to resume")
        if view.status != RunStatus.INTERRUPTED:
            raise InputError(
                f"run {run_id}: {view.status} in another process or on the workers; "
                "only an interrupted run is resumed"
            )
        checkpoint = read_checkpoint(directory)  # checked whole: schemas, bounds, run id
        docs = committed_docs(directory, checkpoint.iteration)
        if settings.redis_url:
            from soakq.cli.distributed import resume_distributed

            raise typer.Exit(resume_distributed(settings, checkpoint, docs, root, wait=wait))
        raise typer.Exit(_resume_embedded(checkpoint, docs, root))


def _resume_embedded(checkpoint: Any, docs: list[dict[str, Any]], root: Path) -> int:
    from soakq.cli.main import embedded_verdict, interruptible
    from soakq.cli.output import RunProgress, run_line
    from soakq.config import RunSpec
    from workers.embedded import embedded_worker

    spec = RunSpec.model_validate(checkpoint.record["spec"])
    print(
        f"{run_line(spec, 'embedded')}: resuming after {checkpoint.iteration}/"
        f"{spec.iterations} iterations",
        flush=True,
    )
    with interruptible(spec.run_id, root), RunProgress(spec.iterations, spec.run_id) as bar:
        record, directory = embedded_worker().resume(checkpoint, docs, root, progress=bar.update)
    return embedded_verdict(record, directory)
