"""Each soakq Celery app's context: its settings, where its tasks write artifacts and, per
process, its run store (production opens a ``RedisStore`` lazily, so again after a fork; the
embedded mode hands in its own). Apart from ``workers.app`` so that the tasks and the executor
can reach it without importing the module that registers them."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from soakq.store import RunStore
from workers.celeryconfig import WorkerSettings

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


def register(app: Celery, ctx: Context) -> None:
    _contexts[app] = ctx


def is_ours(app: Celery) -> bool:
    return app in _contexts


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
