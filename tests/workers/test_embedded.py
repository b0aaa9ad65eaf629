"""Embedded mode: the production tasks on an in-process worker give the in-memory twin's bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from soakq_worker_harness import assert_same_artifacts, spec_for

from soakq.documents import check_record
from soakq.engine import run_embedded
from soakq.runner import exit_code_of

pytestmark = pytest.mark.workers  # a real (in-process) Celery worker; no Redis needed


def test_embedded_6x3_is_byte_identical_to_the_in_memory_twin(tmp_path: Path) -> None:
    from workers.embedded import run_embedded_celery

    spec = spec_for(iterations=6, mode="volatile")
    assert len(spec.symbols) == 3
    seen: list[int] = []
    record, celery_dir = run_embedded_celery(
        spec, tmp_path / "celery", progress=lambda i, doc: seen.append(i)
    )
    twin_record, twin_dir = run_embedded(spec, tmp_path / "memory")
    assert seen == [1, 2, 3, 4, 5, 6]
    assert record["status"] == twin_record["status"] == "succeeded"
    names = assert_same_artifacts(celery_dir, twin_dir)
    assert {"STEADY_TREND.md", "trend.png", "ITER_SUMMARY_final.json"} <= set(names)
    assert record["runtime"]["execution"] == "embedded"


def test_embedded_hard_gate_stop_matches_too(tmp_path: Path) -> None:
    from workers.embedded import run_embedded_celery

    spec = spec_for(profile="aggressive", iterations=6, mode="volatile", kpi_gate="hard")
    record, celery_dir = run_embedded_celery(spec, tmp_path / "celery")
    twin_record, twin_dir = run_embedded(spec, tmp_path / "memory")
    assert record["status"] == "failed" and exit_code_of(check_record(record, spec.run_id)) == 3
    assert exit_code_of(check_record(twin_record, spec.run_id)) == 3
    assert_same_artifacts(celery_dir, twin_dir)


def test_embedded_worker_is_real_not_eager(tmp_path: Path) -> None:
    import fakeredis

    from workers.embedded import embedded_worker
    from workers.store import RedisStore

    worker = embedded_worker()
    conf = worker.app.conf
    assert not conf.task_always_eager
    assert conf.broker_url == "memory://" and conf.result_backend == "cache+memory://"
    assert conf.broker_transport_options["polling_interval"] == 0.001
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert worker._worker is not None
    assert worker._worker.pool_cls.__module__ == "celery.concurrency.solo"
    store = worker._fresh(tmp_path)
    assert isinstance(store, RedisStore) and isinstance(store.client, fakeredis.FakeRedis)


def test_cli_submit_runs_embedded_through_celery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAKQ_")}
    argv = [
        sys.executable,
        "-c",
        "from soakq.cli.main import main; main()",
        "submit",
        "--profile",
        "steady_safe",
        "--source",
        "kpi",
        "--iterations",
        "3",
        "--artifacts",
        str(tmp_path),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(embedded)" in done.stdout and "iteration 3/3" in done.stdout
    run_dirs = [p for p in (tmp_path / "soak").iterdir() if not p.is_symlink()]
    assert len(run_dirs) == 1
    _, twin = run_embedded(spec_for(iterations=3), tmp_path / "twin")
    assert_same_artifacts(run_dirs[0], twin)
    assert done.stderr == ""
