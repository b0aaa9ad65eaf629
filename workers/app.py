"""The Celery app: ``celery -A workers.app worker|beat|flower`` finds ``app`` here.

``make_app`` builds an app for any settings (the CLI builds one to send by name; the embedded mode
builds one on ``memory://``). Each app has a ``Context``: its settings, where its tasks write
artifacts and, per process, its run store (production opens a ``RedisStore`` lazily, so again
after a fork; the embedded mode hands in its own).
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from soakq.settings import Settings
from soakq.store import RunStore
from workers.celeryconfig import WorkerSettings, celery_config, worker_settings

_mu = threading.Lock()


@dataclass
class Context:
    """What soakq's tasks need from the app that runs them."""

    settings: WorkerSettings
    artifacts: Path
    store: RunStore | None = None
    store_pid: int | None = None  # the process the store's connections belong to

    def use(self, store: RunStore, artifacts: str | os.PathLike[str] | None = None) -> None:
        """Hand in a store (and an artifacts root) for this process."""
        self.store, self.store_pid = store, os.getpid()
        if artifacts is not None:
            self.artifacts = Path(artifacts)


_contexts: weakref.WeakKeyDictionary[Celery, Context] = weakref.WeakKeyDictionary()


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
    _contexts[app] = ctx
    import workers.tasks  # noqa: F401  (registers the shared tasks on every app)

    return app


def context_of(app: Celery) -> Context:
    return _contexts[app]


def settings_of(app: Celery) -> WorkerSettings:
    return _contexts[app].settings


def artifacts_of(app: Celery) -> Path:
    return _contexts[app].artifacts


def store_of(app: Celery) -> RunStore:
    """The app's run store in this process (new connections after a fork)."""
    ctx = _contexts[app]
    if ctx.store is not None and ctx.store_pid == os.getpid():
        return ctx.store
    with _mu:
        ws = ctx.settings
        if not ws.redis_url:
            raise RuntimeError("no run store: embedded apps are given one by workers.embedded")
        from workers.store import RedisStore

        store = RedisStore.from_url(
            ws.redis_url,
            prefix=ws.key_prefix,
            socket_timeout=ws.socket_timeout_s,
            socket_connect_timeout=ws.socket_timeout_s,
            retention_s=ws.retention_s,
        )
        ctx.use(store)
        return store


def _default_app() -> Celery:
    from soakq.settings import load_settings

    return make_app(load_settings())


app: Any = _default_app()
