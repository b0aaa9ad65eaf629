"""The Celery app: ``celery -A workers.app worker|beat|flower`` finds ``app`` here.

``make_app`` builds an app for any settings (the CLI builds one to send by name; the embedded mode
builds one on ``memory://``). Each app has a ``Context``: its settings, where its tasks write
artifacts and, per process, its run store (production opens a ``RedisStore`` lazily, so again
after a fork; the embedded mode hands in its own).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from celery import Celery, signals

from soakq.settings import Settings
from soakq.store import RunStore
from workers.celeryconfig import celery_config, worker_settings
from workers.context import (  # noqa: F401  (the app's context, re-exported for its users)
    Context,
    artifacts_of,
    context_of,
    is_ours,
    register,
    settings_of,
    store_of,
)

_mu = threading.Lock()
log = logging.getLogger(__name__)


def make_app(
    settings: Settings | None = None,
    *,
    store: RunStore | None = None,
    artifacts_root: str | os.PathLike[str] | None = None,
    main: str = "soakq",
) -> Celery:
    """A configured app with soakq's tasks registered."""
    ws = worker_settings(settings)
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(ws))
    ctx = Context(ws, Path(artifacts_root or ws.artifacts_dir))
    if store is not None:
        ctx.use(store)
    register(app, ctx)
    import workers.tasks  # noqa: F401  (registers the shared tasks on every app)

    return app


#: The only maxmemory-policy under which Redis never drops a run record, a lock, a fencing
#: counter or a queued task on its own (every other policy evicts some keys).
SAFE_EVICTION_POLICY = "noeviction"


def eviction_refusal(app: Celery) -> str | None:
    """Why a worker of ``app`` must not start: its Redis may evict keys. None when it may
    start (the policy is safe, Redis is not reachable yet, or CONFIG is not allowed to us)."""
    ws = settings_of(app)
    if not ws.redis_url:
        return None
    from soakq.errors import TransientStoreError
    from workers.store import RedisStore, redacted

    store = store_of(app)
    assert isinstance(store, RedisStore)
    try:
        policy = store.eviction_policy()
    except TransientStoreError:
        return None  # not up yet: the worker waits for the broker like any Celery worker
    if policy is None:
        log.warning("cannot read maxmemory-policy (CONFIG refused); make sure it is noeviction")
        return None
    if policy == SAFE_EVICTION_POLICY:
        return None
    return (
        f"soakq worker: Redis at SOAKQ_REDIS_URL={redacted(ws.redis_url)} has "
        f"maxmemory-policy {policy}, which can evict run records, locks and queued tasks; "
        f"set maxmemory-policy {SAFE_EVICTION_POLICY} (see ops/redis.conf)"
    )


@signals.celeryd_init.connect
def _refuse_evicting_redis(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Before a `celery worker` of one of our apps starts its pool: refuse, in one line and
    exit 2, a Redis that may evict keys. (SystemExit, as Celery logs and swallows the rest.)"""
    app = getattr(instance, "app", None)
    if app is None or not is_ours(app):
        return
    why = eviction_refusal(app)
    if why is not None:
        print(why, file=sys.stderr, flush=True)
        raise SystemExit(2)


@signals.worker_process_init.connect
def _freeze_startup_objects(**_: Any) -> None:
    """A pool child keeps what it inherited for its whole life: out of the garbage collector's
    way, so the collections its tasks' allocations trigger stay short."""
    gc.collect()
    gc.freeze()


def _default_app() -> Celery:
    """The app `celery -A workers.app` loads. A bad setting is one line and exit 2 here too:
    this runs at import, before any soakq command could say it (and Celery would print the
    import's traceback)."""
    from soakq.errors import ConfigError
    from soakq.settings import load_settings

    try:
        return make_app(load_settings())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


app: Any = _default_app()
