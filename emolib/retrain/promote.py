"""Journaled promotion (every model file always whole, old or new), previous versions, the run lock, history."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from emolib.errors import EmolibError
from emolib.files import jsonable

__all__ = ["JOURNAL", "STAGING_PREFIX", "LOCK_NAME", "model_files", "promote", "recover", "retrain_lock",
           "append_history", "read_history", "now_iso"]

JOURNAL = ".promotion.json"


STAGING_PREFIX = ".staging-"


LOCK_NAME = ".retrain.lock"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``...Z``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_synced(src: Path, dest: Path) -> None:
    """Copy with fsync; the copy is readable by all like any shipped file (writers' temp files are 0600)."""
    shutil.copy2(src, dest)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(dest, 0o666 & ~umask)
    with open(dest, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT until the block ends (SIGKILL cannot be held: the journal covers it)."""
    sigs = {signal.SIGTERM, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def model_files(folder: Path, model: str = "model.keras", exclude: Any = ()) -> list[str]:
    """The files making up one model folder, the model first, metrics.json last.

    Visible regular files not matching an ``exclude`` glob (generated samples are not the model).
    """
    import fnmatch

    names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not any(fnmatch.fnmatch(p.name, pat) for pat in exclude)) if folder.is_dir() else []
    return sorted(names, key=lambda n: (n != model, n == "metrics.json", n))


def promote(candidate_dir: Path, current_dir: Path, files: list[str] | None, versions_dir: Path, stamp: str,
            keep_versions: int = 5) -> Path | None:
    """Replace ``current_dir``'s files by ``candidate_dir``'s ``files`` (default: all), atomically per file.

    Steps: copy the candidate files into staging files inside ``current_dir`` (same filesystem, so
    the rename is atomic); copy the current model folder to ``versions_dir/<stamp>/``; write a
    journal; ``os.replace`` each staged file over its target in ``files`` order (the model first,
    metrics.json last); drop the journal. A run killed before the journal exists changes nothing;
    one killed after it is rolled forward by :func:`recover`; every file is always whole, old or
    new. Files of the current folder the candidate lacks (a model card) stay. Returns the folder
    holding the previous version (None when there was none).
    """
    files = model_files(candidate_dir) if files is None else files
    current_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for name in files:
        tmp = current_dir / f"{STAGING_PREFIX}{stamp}-{name}"
        _copy_synced(candidate_dir / name, tmp)
        staged.append((tmp, current_dir / name))
    previous = None
    existing = model_files(current_dir)
    if existing:
        previous = versions_dir / stamp
        partial = versions_dir / f".partial-{stamp}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in existing:
            _copy_synced(current_dir / name, partial / name)
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(partial, previous)
        _fsync_dir(versions_dir)
    journal = current_dir / JOURNAL
    tmp_journal = current_dir / f"{STAGING_PREFIX}{stamp}-journal"
    tmp_journal.write_text(json.dumps({"stamp": stamp, "moves": [[t.name, d.name] for t, d in staged]}))
    os.replace(tmp_journal, journal)
    _fsync_dir(current_dir)
    with _signals_deferred():
        _roll_forward(current_dir)
    if keep_versions > 0 and versions_dir.is_dir():
        old = sorted(p for p in versions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for p in old[:-keep_versions]:
            shutil.rmtree(p, ignore_errors=True)
    return previous


def _roll_forward(current_dir: Path) -> None:
    journal = current_dir / JOURNAL
    moves = json.loads(journal.read_text())["moves"]
    for tmp_name, dest_name in moves:
        tmp = current_dir / tmp_name
        if tmp.exists():
            os.replace(tmp, current_dir / dest_name)
    _fsync_dir(current_dir)
    journal.unlink()
    _fsync_dir(current_dir)


def recover(models_dir: Path) -> list[str]:
    """Finish promotions a killed run left journaled; delete its orphan staging files. Returns notes."""
    notes: list[str] = []
    if not models_dir.is_dir():
        return notes
    for journal in sorted(models_dir.rglob(JOURNAL)):
        try:
            _roll_forward(journal.parent)
            notes.append(f"finished an interrupted promotion in {journal.parent}")
        except (OSError, ValueError, KeyError) as err:
            notes.append(f"could not finish the interrupted promotion in {journal.parent}: {err}")
    for stray in sorted(models_dir.rglob(f"{STAGING_PREFIX}*")):
        if stray.is_file():
            stray.unlink()
            notes.append(f"removed the unused staging file {stray}")
    for stray in sorted(models_dir.rglob(".partial-*")):
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
    return notes


@contextlib.contextmanager
def retrain_lock(models_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<models_dir>/.retrain.lock`` (released by the OS if the run dies)."""
    import fcntl

    path = models_dir / LOCK_NAME
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - held open (and locked) until the finally below
    except OSError as err:
        raise EmolibError(f"cannot write to the models folder ({err.strerror}); set models_dir in the config "
                          "to a writable copy", models_dir) from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            raise EmolibError(f"another retrain is running ({who}); try again when it has finished", path) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {now_iso()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def append_history(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line in a single write (a killed run never leaves half a line mid-file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a history file, oldest first (a truncated last line is skipped)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in Path(path).read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out
