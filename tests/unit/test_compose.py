"""compose.yaml and ops/: valid Compose, and shaped the way docs/runbook.md says.

Validation, strongest available first:
- ``docker compose config`` when the Compose plugin is installed (skipped otherwise: it is not
  on the CI image);
- the official compose-spec JSON schema, as vendored by ``check-jsonschema``
  (``--builtin-schema vendor.compose-spec``), with a broken copy as a negative control;
- structural checks on the PyYAML parse (commands, env, auth, healthchecks, port bindings).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
OPS = REPO / "ops"
LOCAL_PASSWORD = "soakq-local-only"

# The commands the worker/chaos tests start as subprocesses; compose must run the same ones.
WORKER_CMD = ["celery", "-A", "workers.app", "worker"]
BEAT_CMD = ["celery", "-A", "workers.app", "beat", "-S", "workers.beat_scheduler:Scheduler"]
FLOWER_CMD = ["celery", "-A", "workers.app", "flower"]

_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose interpolation with an empty environment: ``${X:-default}`` → default."""
    return _VAR.sub(lambda m: m.group(2) or "", value.replace("$$", "\0")).replace("\0", "$")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(c) for c in command]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _interpolate(str(v)) for k, v in env.items()}


def _need(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        reason = f"{what} needs {module} (pip install 'soakq[test]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must have it", pytrace=False)
        pytest.skip(reason)


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- validators ----------------------------------------------------------------------------
def test_compose_spec_schema_accepts_it():
    _need("check_jsonschema", "compose-spec schema validation")
    result = _check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_schema_is_live(tmp_path):
    """Negative control: the same validator rejects a misspelt service key."""
    _need("check_jsonschema", "compose-spec schema validation")
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    init: true\n", "    inti: true\n", 1))
    result = _check_jsonschema(broken)
    assert result.returncode != 0
    assert "inti" in result.stdout + result.stderr


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        ok = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [docker, "compose"] if ok.returncode == 0 else None


def test_docker_compose_config_accepts_it():
    cli = _docker_compose()
    if cli is None:
        pytest.skip("the docker compose plugin is not installed here (`docker compose version`)")
    for profile in ([], ["--profile", "example", "--profile", "monitoring"]):
        result = subprocess.run(
            [*cli, "-f", str(COMPOSE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "FLOWER_"))},
        )
        assert result.returncode == 0, result.stderr


# -- structure -----------------------------------------------------------------------------
def test_services_present(services):
    assert {"redis", "worker", "beat", "flower", "prometheus", "submit"} <= set(services)
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: a container_name prevents scaling"


def test_redis_is_durable_passworded_and_never_evicts(services):
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    argv = [_interpolate(a) for a in _argv(redis["command"])]
    assert argv[0] == "redis-server"
    assert argv[argv.index("--requirepass") + 1] == LOCAL_PASSWORD
    assert "${REDIS_PASSWORD" in str(redis["command"])  # from the environment, not hard-coded
    conf_in_container = argv[1]
    assert f"./ops/redis.conf:{conf_in_container}:ro" in redis["volumes"]
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    test = " ".join(_argv(redis["healthcheck"]["test"]))
    assert "redis-cli ping" in test and "PONG" in test
    assert _env(redis)["REDISCLI_AUTH"] == LOCAL_PASSWORD

    conf = _redis_conf()
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["appendfsync"] in {"everysec", "always"}
    assert "requirepass" not in conf  # the secret lives in the environment


def _redis_conf() -> dict[str, str]:
    conf = {}
    for line in (OPS / "redis.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def test_worker_is_scalable_and_configured(services):
    worker = services["worker"]
    argv = _argv(worker["command"])
    assert argv[:4] == WORKER_CMD
    assert "--concurrency=2" in argv and "--loglevel=INFO" in argv
    assert "ports" not in worker  # a fixed host port would clash when scaled
    assert worker["build"]["dockerfile"] == "ops/Dockerfile"
    env = _env(worker)
    assert env["SOAKQ_REDIS_URL"] == f"redis://:{LOCAL_PASSWORD}@redis:6379/0"
    assert env["SOAKQ_ARTIFACTS_DIR"] == "/artifacts"
    assert "artifacts:/artifacts" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "pong" in " ".join(_argv(worker["healthcheck"]["test"]))


def test_beat_runs_redbeat(services):
    beat = services["beat"]
    assert _argv(beat["command"])[:6] == BEAT_CMD
    assert _env(beat)["SOAKQ_REDIS_URL"] == f"redis://:{LOCAL_PASSWORD}@redis:6379/0"


def test_flower_is_authenticated_read_only_and_local(services):
    flower = services["flower"]
    raw = _argv(flower["command"])
    assert raw[:4] == FLOWER_CMD
    auth = next(a for a in raw if a.startswith("--basic-auth="))
    assert "${FLOWER_USER" in auth and "${FLOWER_PASSWORD" in auth
    assert _interpolate(auth).split("=", 1)[1] == f"soakq:{LOCAL_PASSWORD}"
    assert "--read-only" in raw
    assert "--port=5555" in raw
    assert [_interpolate(p) for p in flower["ports"]] == ["127.0.0.1:5555:5555"]
    assert "healthcheck" in " ".join(_argv(flower["healthcheck"]["test"]))
    assert "FLOWER_UNAUTHENTICATED_API" not in _env(flower)


def test_every_published_port_is_loopback_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert _interpolate(str(port)).startswith("127.0.0.1:"), f"{name}: {port}"


def test_prometheus_is_optional_and_scrapes_flower(services):
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["flower"]["metrics_path"] == "/metrics"
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]


def test_submit_example_is_a_one_shot_profile(services):
    submit = services["submit"]
    assert submit["profiles"] == ["example"]
    assert _argv(submit["command"]) == [
        "soakq", "submit", "--profile", "steady_safe", "--iterations", "6", "--wait",
    ]  # fmt: skip
    assert submit["restart"] == "no"
    assert _env(submit)["SOAKQ_REDIS_URL"] == f"redis://:{LOCAL_PASSWORD}@redis:6379/0"


def test_referenced_files_exist(services):
    assert (REPO / services["worker"]["build"]["dockerfile"]).is_file()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), volume


def test_dockerfile_installs_the_package_as_a_non_root_user():
    text = (OPS / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install ." in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}


def test_runbook_covers_operations():
    text = (REPO / "docs" / "runbook.md").read_text()
    for needle in [
        "docker compose up -d --scale worker=4",
        "soakq status",
        "soakq cancel",
        "soakq export",
        "watchdog",
        "appendonly",
        "--read-only",
    ]:
        assert needle in text, needle


@pytest.mark.redis
def test_redis_conf_loads_in_a_real_redis_7(tmp_path):
    """The config file parses and takes effect (``dir /data`` pointed at a temp dir)."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH; CI must provide it", pytrace=False)
        pytest.skip("redis-server is not on PATH")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    if not re.search(r"v=([7-9]|\d{2,})\.", version.stdout):
        pytest.skip(f"needs redis 7+ like the image, found: {version.stdout.strip()}")
    conf = tmp_path / "redis.conf"
    conf.write_text((OPS / "redis.conf").read_text().replace("dir /data", f"dir {tmp_path}"))
    sock = tmp_path / "redis.sock"
    # No TCP at all: a unix socket in the temp dir, so nothing else can reach it.
    argv = [binary, str(conf), "--port", "0", "--unixsocket", str(sock), "--requirepass", "pw"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = redis.Redis(unix_socket_path=str(sock), password="pw", socket_timeout=2.0)
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
                pytest.fail(f"redis-server did not start with ops/redis.conf: {out[-2000:]}")
            time.sleep(0.02)
        assert client.ping()
        config = {k: _text(v) for k, v in client.config_get("*").items()}
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["appendfsync"] == "everysec"
        assert int(config["maxmemory"]) > 0
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
