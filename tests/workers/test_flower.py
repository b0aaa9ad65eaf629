"""Flower, started for real behind basic auth and read-only, sees the real workers."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request

import pytest
from soakq_worker_harness import HOST, Cluster, free_port, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]


def get(url: str, auth: tuple[str, str] | None = None, *, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""  # not listening yet


def test_flower_lists_the_workers_behind_basic_auth(cluster: Cluster) -> None:
    port = free_port()
    # With --basic-auth the API is on and guarded; FLOWER_UNAUTHENTICATED_API is only for
    # running it without any auth, which we never do.
    cluster.start_process(
        "flower",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            "--basic-auth=user:pass",
            "--read-only",
            "--inspect_timeout=1000",
        ],
    )
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        status = wait_for(lambda: get(url)[0] or None, "flower to listen")
        assert status == 401
        assert get(url, ("user", "wrong"))[0] == 401

        def listed() -> dict | None:
            code, body = get(f"{url}?refresh=1", ("user", "pass"))
            if code != 200:
                return None
            workers = json.loads(body)
            return workers if {f"w1@{HOST}", f"w2@{HOST}"} <= set(workers) else None

        workers = wait_for(listed, "flower to list w1 and w2", every_s=0.5)
        assert workers[f"w1@{HOST}"]["stats"]["pool"]["max-concurrency"] == 1
        # Read-only: even with credentials, a control call is refused and the worker lives on.
        shutdown = f"http://127.0.0.1:{port}/api/worker/shutdown/w1@{HOST}"
        assert get(shutdown, ("user", "pass"), method="POST")[0] == 403
        assert cluster.procs["w1"].poll() is None
    finally:
        cluster.stop("flower")
