"""What an embedded run leaves on disk to be resumed, and the lock that says it is still running.

After every committed iteration an embedded run writes ``CHECKPOINT.json`` beside its
``ITER_SUMMARY_<i>.json`` files: the run record, the run state (overrides, guard ledger, freeze,
streaks) and the state version, exactly as the store holds them. The iteration documents are not
repeated there: ``ITER_SUMMARY_1..k`` are the store's documents byte for byte, so a resume reads
them back. A finished run has no checkpoint (``export_run`` removes it). The process running a
run holds an advisory ``flock`` on ``.lock`` in the run directory; the kernel drops it
when the process dies, even on ``kill -9``, so "queued/running but nobody holds the lock" is an
interrupted run (docs/resume.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakq.artifacts import CHECKPOINT, iteration_file, iteration_files, run_dir
from soakq.documents import check_record, check_state
from soakq.errors import ConfigError, InputError, StoreError
from soakq.jsonio import read_json, write_json
from soakq.params import validate_overrides
from soakq.states import RunStatus
from soakq.store import RunStore

FORMAT = 1
LOCK = ".lock"


@dataclass(frozen=True)
class Checkpoint:
    """A run as its store held it after its last committed iteration."""

    record: dict[str, Any]
    state: dict[str, Any]
    version: int

    @property
    def iteration(self) -> int:
        """Iterations committed (0 before the first)."""
        return int(self.state["iteration"])  # validated by read_checkpoint


def write_checkpoint(store: RunStore, run_id: str, artifacts_root: str | os.PathLike[str]) -> None:
    """Write ``CHECKPOINT.json`` for a run that has not ended (a finished run needs none)."""
    try:
        record, state, version = store.read_run(run_id)  # as stored: the checkpoint's bytes
    except KeyError:
        return
    if check_record(record, run_id).status.terminal:
        return
    doc = {"format": FORMAT, "record": record, "state": state, "version": version}
    write_json(run_dir(artifacts_root, run_id) / CHECKPOINT, doc)


def read_checkpoint(directory: Path) -> Checkpoint:
    """The checkpoint of a run directory; InputError (exit 2) naming the file when unusable."""
    path = directory / CHECKPOINT
    if not path.exists():
        raise InputError(
            f"{path}: no checkpoint, so the run cannot be resumed (runs started by soakq "
            "before checkpoints, and distributed runs, which Redis keeps, have none)"
        )
    doc = read_json(path)
    if not isinstance(doc, dict) or not {"format", "record", "state", "version"} <= set(doc):
        raise InputError(f"{path}: not a soakq checkpoint (format, record, state, version)")
    if doc["format"] != FORMAT:
        raise InputError(f"{path}: checkpoint format {doc['format']!r}; this soakq reads 1")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InputError(f"{path}: version {version!r} is not a whole number >= 0")
    run_id = directory.name
    try:  # the record and state it restores have the one schema (soakq/documents.py)
        record = check_record(doc["record"], run_id) if isinstance(doc["record"], dict) else None
        state = check_state(doc["state"], run_id) if isinstance(doc["state"], dict) else None
        if record is None or state is None:
            raise InputError(f"{path}: record and state must be JSON objects")
        validate_overrides(state.overrides, layer=f"{path}: state.overrides")
    except StoreError as exc:
        raise InputError(f"{path}: {exc}") from None
    except ConfigError as exc:  # names the file already
        raise InputError(str(exc)) from None
    # ...and they agree with each other and with the directory they were found in.
    if record.run_id != run_id or record.spec.run_id != run_id:
        raise InputError(f"{path}: it is the checkpoint of run {record.run_id!r}, not {run_id!r}")
    if state.iteration > record.spec.iterations:
        raise InputError(
            f"{path}: state.iteration {state.iteration} is beyond the run's "
            f"{record.spec.iterations} planned iterations"
        )
    return Checkpoint(dict(doc["record"]), dict(doc["state"]), version)


def committed_docs(directory: Path, iterations: int) -> list[dict[str, Any]]:
    """``ITER_SUMMARY_1..iterations`` as written by the run; InputError naming a missing one."""
    docs = []
    for i in range(1, iterations + 1):
        path = iteration_file(directory, i)
        if not path.exists():
            raise InputError(f"{path}: missing; the checkpoint says {iterations} iterations ran")
        doc: dict[str, Any] = read_json(path)
        if doc.get("iteration") != i:
            raise InputError(f"{path}: holds iteration {doc.get('iteration')!r}, not {i}")
        docs.append(doc)
    return docs


def clear_after(directory: Path, iterations: int) -> None:
    """Remove what a resume will write again: every file of the run directory except
    ``RUN.json``, the checkpoint, hidden files (the lock) and ``ITER_SUMMARY_1..iterations``:
    the report so far, the files of iterations committed after the checkpoint was written."""
    committed = {path for i, path in iteration_files(directory) if i <= iterations}
    for path in directory.iterdir():
        keep = (
            path.name in (CHECKPOINT, "RUN.json")
            or path.name.startswith(".")  # the lock, a writer's temporary file
            or path in committed
        )
        if not keep and path.is_file():
            path.unlink()


class DirectoryLock:
    """The advisory lock (``flock`` on a hidden file) of the process writing a directory, held
    until ``release`` or the process's death; the directory must exist."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self, *, attempts: int = 5, pause_s: float = 0.05) -> bool:
        """Take the lock; False when another holder keeps it through ``attempts`` tries (a
        listing's ``is_running`` probe holds it for microseconds: a retry rides that out).
        A lock taken on a file that was meanwhile unlinked (its holder released it) is not the
        lock: the file at the path is opened again."""
        for attempt in range(attempts):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if attempt + 1 < attempts:
                    time.sleep(pause_s)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)
        return False

    def release(self) -> None:
        """Unlink the file, then drop the lock (a taker that locked the unlinked file sees it
        and retries on the path): a finished run leaves no lock file behind."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def held_or_refused(lock: DirectoryLock, refusal: str) -> Iterator[None]:
    """Hold ``lock`` while the block runs; ConfigError(``refusal``) when another process holds
    it (two processes writing one directory would undo each other's files)."""
    if not lock.acquire():
        raise ConfigError(refusal)
    try:
        yield
    finally:
        lock.release()


class RunLock(DirectoryLock):
    """The lock of the process running a run, in its run directory."""

    def __init__(self, artifacts_root: str | os.PathLike[str], run_id: str) -> None:
        super().__init__(run_dir(artifacts_root, run_id))


def is_running(artifacts_root: str | os.PathLike[str], run_id: str) -> bool:
    """Whether some process holds the run's lock now."""
    path = run_dir(artifacts_root, run_id) / LOCK
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class LocalRun:
    """A run as its directory shows it: status (``interrupted`` for an embedded run whose
    process is gone), iterations done, iterations planned, release-gate verdict or None."""

    status: str
    completed: int
    planned: int
    release_gate: str | None


def local_run(artifacts_root: str | os.PathLike[str], run_json: dict[str, Any]) -> LocalRun:
    """Read a run directory's RUN.json (and checkpoint) as a listing shows it."""
    run_id = str(run_json["run_id"])
    directory = run_dir(artifacts_root, run_id)
    outcome = run_json.get("outcome") or {}
    status = str(run_json["status"])
    config = run_json.get("config") or {}
    planned = int(config.get("iterations", outcome.get("iterations_planned", 0)))
    completed = int(outcome.get("iterations_completed", 0))
    embedded = (run_json.get("runtime") or {}).get("execution") == "embedded"
    if embedded and (directory / CHECKPOINT).exists() and not RunStatus(status).terminal:
        # RUN.json is rewritten at the start and the end; the checkpoint after every commit.
        with contextlib.suppress(InputError):
            cp = read_checkpoint(directory)
            completed = cp.iteration
            if status != RunStatus.INTERRUPTED:
                status = str(cp.record.get("status", status))
    waiting = status in (RunStatus.QUEUED, RunStatus.RUNNING)
    if embedded and waiting and not is_running(artifacts_root, run_id):
        status = str(RunStatus.INTERRUPTED)
    return LocalRun(status, completed, planned, outcome.get("release_gate"))
