"""Scheduled retraining: run the notebooks with papermill, gate the candidates, promote atomically.

One run (``emolib retrain --config retrain.yaml``):

1. takes a lock (two retrains never interleave) and finishes any promotion a killed run left
   half-done (a journal makes promotion roll forward);
2. checks every notebook has the parameters the run will pass (papermill's ``inspect_notebook``:
   papermill itself only warns about unknown names);
3. executes 02_mp3_to_midi (only when an MP3 folder is configured), 01_emotion_cnn and
   03_train_rnn_per_emotion into ``<runs_dir>/<UTC timestamp>/``: executed notebooks,
   ``candidates/face/`` and ``candidates/melody/<emotion>/`` (model + metrics.json each);
4. only when every notebook succeeded: gates each candidate against the current model on the same
   validation metric (read from both metrics.json files; direction and margin configurable) and
   promotes the winners: copy into a staging file inside the models folder, keep the previous
   version under ``<models_dir>/versions/``, then ``os.replace``;
5. appends one JSON line per run to the history file (time, data counts, notebooks, metrics,
   promoted or not and why) and writes the same record to ``<run>/run.json``.

A killed run never touches the current model files except through ``os.replace``, so they stay
intact and loadable whatever moment the signal arrives.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import signal
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from emolib.errors import EmolibError
from emolib.face_data import IMAGE_SUFFIXES
from emolib.paths import MODELS_DIR, REPO_ROOT, data_root

#: The notebooks a retrain runs, in order. ``injected`` parameters are set by the run itself
#: (data folders and output locations); the config may not set them under ``parameters``.
STEPS: dict[str, dict[str, Any]] = {
    "mp3_to_midi": {"notebook": "notebooks/02_mp3_to_midi.ipynb", "injected": ("MP3_DIR", "MIDI_OUT_DIR")},
    "emotion_cnn": {"notebook": "notebooks/01_emotion_cnn.ipynb", "injected": ("DATA_DIR", "OUT_MODEL")},
    "melody": {"notebook": "notebooks/03_train_rnn_per_emotion.ipynb", "injected": ("MIDI_DIR", "OUT_DIR")},
}
#: Which step produces which kind of model.
KIND_OF_STEP = {"emotion_cnn": "face", "melody": "melody"}

DEFAULT_GATES: dict[str, dict[str, Any]] = {
    "face": {"metric": "validation.macro_f1", "mode": "max", "margin": 0.0, "model": "model.keras",
             "comparable": ["classes"], "verify_load": True, "imports": [], "loader": "emolib.face_model:load_face_model",
             "exclude": ["*.mid", "*.wav"]},
    "melody": {"metric": "val.nll", "mode": "min", "margin": 0.0, "model": "generator.npz",
               "comparable": ["data.midi_dir", "config.seed"], "verify_load": True, "imports": [],
               "loader": "emolib.melody:load_bundle_file", "exclude": ["*.mid", "*.wav"]},
}
JOURNAL = ".promotion.json"
STAGING_PREFIX = ".staging-"
LOCK_NAME = ".retrain.lock"
AUDIO_EXTS = (".mp3", ".wav", ".flac", ".ogg", ".m4a")
MIDI_EXTS = (".mid", ".midi")
IMAGE_EXTS = IMAGE_SUFFIXES  # the one image-suffix list (emolib.face_data)


class NotebookFailed(EmolibError):
    """A notebook raised: names the notebook and the cell (as numbered in the executed copy)."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT arrived: unwinds like KeyboardInterrupt so papermill shuts its kernel down."""


# --------------------------------------------------------------------------- config
@dataclass
class Config:
    """A parsed, path-resolved retrain.yaml (see the documented example at the repository root)."""

    path: Path
    models_dir: Path
    runs_dir: Path
    history: Path
    keep_versions: int
    kernel: str
    cell_timeout: int | None
    data: dict[str, Path | None]
    steps: dict[str, dict[str, Any]]  # name -> {"enabled", "notebook": Path, "parameters": dict}
    gates: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate ``retrain.yaml``; relative paths resolve against the file's folder."""
    import yaml

    path = Path(path).expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise EmolibError("retrain config not found", path) from None
    except yaml.YAMLError as err:
        raise EmolibError(f"not valid YAML: {err}".splitlines()[0], path) from None
    if not isinstance(raw, dict):
        raise EmolibError("expected a mapping at the top level", path)
    known = {"models_dir", "runs_dir", "history", "keep_versions", "kernel", "cell_timeout", "data", "notebooks", "gate"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EmolibError(f"unknown key(s) {unknown}; known: {sorted(known)}", path)
    base = path.parent

    def resolve(value: Any, default: Path | None = None) -> Path | None:
        if value is None or value == "":
            return default
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    models_dir = resolve(raw.get("models_dir"), MODELS_DIR)
    runs_dir = resolve(raw.get("runs_dir"), base / "runs")
    history = resolve(raw.get("history"), runs_dir / "history.jsonl")

    data_raw = raw.get("data") or {}
    if not isinstance(data_raw, dict):
        raise EmolibError("`data` must be a mapping", path)
    unknown = sorted(set(data_raw) - {"root", "fer2013", "midi", "mp3", "midi_out"})
    if unknown:
        raise EmolibError(f"unknown data key(s) {unknown}; known: root, fer2013, midi, mp3, midi_out", path)
    root = resolve(data_raw.get("root")) or data_root()
    data = {
        "root": root,
        "fer2013": resolve(data_raw.get("fer2013"), root / "fer2013"),
        "mp3": resolve(data_raw.get("mp3")),
        "midi_out": resolve(data_raw.get("midi_out"), runs_dir / "midi_from_mp3"),
        "midi": resolve(data_raw.get("midi")),
    }

    nb_raw = raw.get("notebooks") or {}
    if not isinstance(nb_raw, dict):
        raise EmolibError("`notebooks` must be a mapping", path)
    unknown = sorted(set(nb_raw) - set(STEPS))
    if unknown:
        raise EmolibError(f"unknown notebook step(s) {unknown}; known: {list(STEPS)}", path)
    steps = {}
    for name, spec in STEPS.items():
        entry = nb_raw.get(name) or {}
        if not isinstance(entry, dict):
            raise EmolibError(f"notebooks.{name} must be a mapping", path)
        typo = sorted(set(entry) - {"enabled", "notebook", "parameters"})
        if typo:
            raise EmolibError(f"unknown key(s) {typo} in notebooks.{name}; known: enabled, notebook, parameters", path)
        params = dict(entry.get("parameters") or {})
        clash = sorted(set(params) & set(spec["injected"]))
        if clash:
            raise EmolibError(f"notebooks.{name}.parameters sets {clash}: the run sets these itself "
                              "(configure data folders under `data`)", path)
        steps[name] = {
            "enabled": bool(entry.get("enabled", True)),
            "notebook": resolve(entry.get("notebook"), REPO_ROOT / spec["notebook"]),
            "parameters": params,
        }
    if data["mp3"] is None:
        steps["mp3_to_midi"]["enabled"] = False

    gate_raw = raw.get("gate") or {}
    gates = {}
    for kind, default in DEFAULT_GATES.items():
        typo = sorted(set(gate_raw.get(kind) or {}) - set(default))
        if typo:
            raise EmolibError(f"unknown key(s) {typo} in gate.{kind}; known: {sorted(default)}", path)
        rule = {**default, **(gate_raw.get(kind) or {})}
        if rule["mode"] not in ("max", "min"):
            raise EmolibError(f"gate.{kind}.mode must be max (higher is better) or min, not {rule['mode']!r}", path)
        try:
            rule["margin"] = float(rule["margin"])
        except (TypeError, ValueError):
            raise EmolibError(f"gate.{kind}.margin must be a number", path) from None
        gates[kind] = rule
    unknown = sorted(set(gate_raw) - set(DEFAULT_GATES))
    if unknown:
        raise EmolibError(f"unknown gate kind(s) {unknown}; known: {list(DEFAULT_GATES)}", path)

    timeout = raw.get("cell_timeout")
    return Config(path=path, models_dir=models_dir, runs_dir=runs_dir, history=history,
                  keep_versions=int(raw.get("keep_versions", 5)), kernel=str(raw.get("kernel", "python3")),
                  cell_timeout=None if timeout is None else int(timeout), data=data, steps=steps,
                  gates=gates, raw=raw)


# --------------------------------------------------------------------------- notebooks
def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The notebook's `parameters` cell as papermill infers it: name -> {default, inferred_type_name, help}.

    Raises EmolibError when the notebook is missing or has no cell tagged `parameters`.
    """
    import nbformat
    from papermill.inspection import inspect_notebook

    notebook = Path(notebook)
    if not notebook.is_file():
        raise EmolibError("notebook not found", notebook)
    nb = nbformat.read(notebook, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise EmolibError("no cell tagged `parameters`", notebook)
    return inspect_notebook(str(notebook))


def check_parameters(notebook: str | os.PathLike, names: Any) -> None:
    """Raise EmolibError naming the notebook when it lacks any of ``names`` (papermill only warns)."""
    have = notebook_parameters(notebook)
    missing = [n for n in names if n not in have]
    if missing:
        raise EmolibError(f"the parameters cell has no {missing} (it has {sorted(have)}): "
                          "the notebook and the config/tests drifted apart", notebook)


@contextlib.contextmanager
def kernel_imports_this_emolib() -> Iterator[None]:
    """Make kernels import the same emolib as this process (a checkout's, not an older install's)."""
    old = os.environ.get("PYTHONPATH")
    src = Path(__file__).resolve().parents[1]
    if not (src / "pyproject.toml").is_file():  # an installed package: the kernel finds it already
        yield
        return
    os.environ["PYTHONPATH"] = str(src) if not old else os.pathsep.join([str(src), old])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def run_notebook(notebook: Path, out: Path, parameters: Mapping[str, Any], kernel: str = "python3",
                 cell_timeout: int | None = None) -> float:
    """Execute ``notebook`` into ``out`` with papermill (cwd = the notebook's folder); returns seconds.

    A failing cell raises NotebookFailed naming the notebook, the cell number in the executed copy
    and the error; the executed copy (with the traceback) is kept at ``out``.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t0 = time.monotonic()
    try:
        with kernel_imports_this_emolib():
            pm.execute_notebook(str(notebook), str(out), parameters=dict(parameters), cwd=str(notebook.parent),
                                kernel_name=kernel, progress_bar=False, log_output=False,
                                execution_timeout=cell_timeout)
    except PapermillExecutionError as err:
        first = next((ln.strip() for ln in (err.source or "").splitlines() if ln.strip()), "")
        raise NotebookFailed(f"cell {err.cell_index} (In [{err.exec_count}]: {first[:80]!r}) raised "
                             f"{err.ename}: {str(err.evalue)[:300]}; executed copy: {out}", notebook) from None
    except Exception as err:  # a cell timeout, a dead kernel (out of memory), a missing kernelspec
        where = _running_cell(out)
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        raise NotebookFailed(f"{where}{type(err).__name__}: {detail}; executed copy: {out}", notebook) from None
    return time.monotonic() - t0


def _running_cell(executed: Path) -> str:
    """'cell N (In [k]) ' for the last cell papermill started in the executed copy, else ''."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:
        return ""
    started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return ""
    cell = nb.cells[started[-1]]
    return f"cell {started[-1]} (In [{cell.get('execution_count')}]) "


# --------------------------------------------------------------------------- metrics and gate
def read_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """A metrics.json as a dict, or None when missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def metric_value(metrics: Mapping[str, Any] | None, key: str) -> Any:
    """``metrics[key]`` where key may be dotted (``validation.macro_f1``); None when absent."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _identity(value: Any) -> Any:
    """What a `comparable` value means: an absolute path by its last two parts (``music/midi``), so
    the same dataset compares equal on every machine while a different folder does not."""
    if isinstance(value, str) and os.path.isabs(value):
        return tuple(Path(value).parts[-2:])
    return value


@dataclass
class Decision:
    """The gate's verdict for one candidate."""

    promote: bool
    reason: str
    candidate: float | None = None
    current: float | None = None


def gate(candidate: Mapping[str, Any] | None, current: Mapping[str, Any] | None, rule: Mapping[str, Any],
         current_exists: bool = True) -> Decision:
    """Promote only a candidate at least as good as the current model on the same validation metric.

    ``rule``: metric (dotted key in metrics.json), mode (max: higher is better; min: lower is
    better), margin (the candidate must beat the current value by at least this), comparable
    (keys whose values must be equal in both metrics, or the two numbers measure different things).
    With no current model the candidate is promoted; with a current model whose metrics lack the
    metric nothing is promoted (it cannot be compared, and the good model must never be lost).
    """
    key, mode, margin = rule["metric"], rule["mode"], float(rule.get("margin", 0.0))
    cand = _number(metric_value(candidate, key))
    if cand is None:
        return Decision(False, f"candidate metrics.json has no finite {key!r}")
    if not current_exists:
        return Decision(True, f"no current model; candidate {key} = {cand:.4g}", cand, None)
    cur = _number(metric_value(current, key))
    if cur is None:
        return Decision(False, f"the current model's metrics.json has no finite {key!r}, so the candidate "
                               f"({cand:.4g}) cannot be compared; kept the current model", cand, None)
    for k in rule.get("comparable") or []:
        a, b = metric_value(current, k), metric_value(candidate, k)
        if a is not None and b is not None and _identity(a) != _identity(b):
            return Decision(False, f"not comparable: {k} differs (current {a!r}, candidate {b!r})", cand, cur)
    if mode == "max":
        ok, sign, rel = cand >= cur + margin, "+", ">=" if cand >= cur + margin else "<"
    else:
        ok, sign, rel = cand <= cur - margin, "-", "<=" if cand <= cur - margin else ">"
    better = "higher" if mode == "max" else "lower"
    return Decision(ok, f"{key} {cand:.4g} {rel} current {cur:.4g} {sign} margin {margin:g} ({better} is better)",
                    cand, cur)


# --------------------------------------------------------------------------- promotion
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
    notes = []
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


def verify_loads(model_path: Path, imports: list[str], loader: str | None = None) -> str | None:
    """None when the candidate loads, else why not.

    With ``loader`` ("module:function"), that function is called with the model path (the way the
    package itself loads this kind of model); else, after importing ``imports`` (which register
    custom Keras objects), a ``.keras`` file is loaded with ``keras.saving.load_model(safe_mode=True)``.
    """
    import importlib

    try:
        for mod in imports:
            importlib.import_module(mod)
        if loader:
            module, _, func = loader.partition(":")
            getattr(importlib.import_module(module), func)(model_path)
        elif model_path.suffix == ".keras":
            import keras

            keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as err:  # any failure means: do not promote
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return f"candidate does not load: {type(err).__name__}: {first}"
    return None


# --------------------------------------------------------------------------- lock, history, counts
@contextlib.contextmanager
def retrain_lock(models_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<models_dir>/.retrain.lock`` (released by the OS if the run dies)."""
    import fcntl

    path = models_dir / LOCK_NAME
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
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
        fh.write(f"pid {os.getpid()} since {_now_iso()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def append_history(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line in a single write (a killed run never leaves half a line mid-file)."""
    from emolib.files import _jsonable

    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=_jsonable) + "\n").encode()
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


def count_data(path: Path | None, exts: tuple[str, ...]) -> dict[str, Any] | None:
    """Files per class folder (``<path>/<class>/*``, ``<path>/<split>/<class>/*`` or FER-style zips)."""
    if path is None:
        return None
    if not path.is_dir():
        return {"path": str(path), "error": "not found"}
    counts: dict[str, int] = {}

    def add(parts: list[str]) -> None:
        if len(parts) >= 2 and parts[-1].lower().endswith(exts):
            key = "/".join(parts[-3:-1]) if len(parts) >= 3 else parts[-2]
            counts[key] = counts.get(key, 0) + 1

    for p in sorted(path.iterdir()):
        if p.is_file() and p.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(p) as zf:
                    for name in zf.namelist():
                        add(name.split("/"))
            except (OSError, zipfile.BadZipFile):
                counts[f"{p.name} (unreadable)"] = 0
        elif p.is_dir():
            for f in p.rglob("*"):
                if f.is_file():
                    add(list(f.relative_to(path).parts))
    return {"path": str(path), "files": sum(counts.values()), "per_folder": counts}


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _new_run_dir(runs_dir: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        run = runs_dir / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
    raise EmolibError("could not create a fresh run folder", runs_dir)


# --------------------------------------------------------------------------- the run
def _log(run_dir: Path | None, message: str) -> None:
    print(f"retrain: {message}", file=sys.stderr, flush=True)
    if run_dir is not None:
        with contextlib.suppress(OSError), open(run_dir / "retrain.log", "a") as fh:
            fh.write(f"{_now_iso()} {message}\n")


def _plan(cfg: Config, run_dir: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(step, notebook, parameters) for every enabled step, in run order."""
    plan = []
    midi_out = cfg.data["midi_out"]
    transcribing = cfg.steps["mp3_to_midi"]["enabled"]
    midi = cfg.data["midi"] or (midi_out if transcribing else cfg.data["root"] / "music" / "midi")
    injected = {
        "mp3_to_midi": {"MP3_DIR": str(cfg.data["mp3"]), "MIDI_OUT_DIR": str(midi_out)},
        "emotion_cnn": {"DATA_DIR": str(cfg.data["fer2013"]),
                        "OUT_MODEL": str(run_dir / "candidates" / "face" / cfg.gates["face"]["model"])},
        "melody": {"MIDI_DIR": str(midi), "OUT_DIR": str(run_dir / "candidates" / "melody")},
    }
    for name in STEPS:
        step = cfg.steps[name]
        if step["enabled"]:
            plan.append((name, step["notebook"], {**step["parameters"], **injected[name]}))
    return plan


def validate(cfg: Config, plan: list[tuple[str, Path, dict[str, Any]]]) -> None:
    """Fail fast, before hours of training: every notebook has every parameter, every input folder exists."""
    if not plan:
        raise EmolibError("every notebook step is disabled; nothing to do", cfg.path)
    produced = plan[0][2].get("MIDI_OUT_DIR")
    for _name, notebook, params in plan:
        check_parameters(notebook, params)
        for key in ("MP3_DIR", "DATA_DIR", "MIDI_DIR"):
            if key not in params or params[key] == produced:
                continue  # not this step's input, or 02 is about to write it
            if not Path(params[key]).is_dir():
                raise EmolibError(f"data folder for {notebook.name} ({key}) not found; set data.* in "
                                  f"{cfg.path.name} or $EMOLIB_DATA", params[key])


def check(config: str | os.PathLike | Config) -> list[dict[str, Any]]:
    """Validate a config without running anything: the plan (step, notebook, parameters) it would run.

    ``<run>`` stands for the run folder a real run would create.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    plan = _plan(cfg, cfg.runs_dir / "<run>")
    validate(cfg, plan)
    return [{"step": n, "notebook": str(nb), "parameters": p} for n, nb, p in plan]


def _candidates(cfg: Config, run_dir: Path, steps_done: list[str]) -> list[dict[str, Any]]:
    """Every candidate the run produced: kind, target name, candidate folder, current folder."""
    out = []
    if "emotion_cnn" in steps_done:
        out.append({"kind": "face", "name": "face", "candidate": run_dir / "candidates" / "face",
                    "current": cfg.models_dir / "face"})
    if "melody" in steps_done:
        root = run_dir / "candidates" / "melody"
        model = cfg.gates["melody"]["model"]
        for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if (sub / model).exists() or (sub / "metrics.json").exists():
                out.append({"kind": "melody", "name": f"melody/{sub.name}", "candidate": sub,
                            "current": cfg.models_dir / "melody" / sub.name})
    return out


def run(config: str | os.PathLike | Config) -> dict[str, Any]:
    """One retrain run (see the module docstring). Returns its history record.

    Raises NotebookFailed (after recording the run) when a notebook fails, EmolibError for a bad
    config, a missing notebook/parameter or another retrain holding the lock.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    with retrain_lock(cfg.models_dir):
        for note in recover(cfg.models_dir):
            _log(None, note)
        for killed in _record_killed_runs(cfg):
            _log(None, f"the run {killed} was killed before it could finish; recorded in {cfg.history}")
        run_dir = _new_run_dir(cfg.runs_dir)
        record: dict[str, Any] = {
            "run": run_dir.name, "started": _now_iso(), "finished": None, "status": "running",
            "run_dir": str(run_dir), "config": str(cfg.path), "models_dir": str(cfg.models_dir),
            "data": {}, "notebooks": [], "models": [], "error": None,
        }
        from emolib.files import write_json

        write_json(run_dir / "run.json", record)  # a run killed outright is found and recorded by the next
        try:
            plan = _plan(cfg, run_dir)
            validate(cfg, plan)
            params_of = {n: p for n, _, p in plan}
            transcribing = "mp3_to_midi" in params_of
            record["data"] = {
                "fer2013": count_data(cfg.data["fer2013"], IMAGE_EXTS) if "emotion_cnn" in params_of else None,
                "mp3": count_data(cfg.data["mp3"], AUDIO_EXTS) if transcribing else None,
                "midi": count_data(Path(params_of["melody"]["MIDI_DIR"]), MIDI_EXTS)
                if "melody" in params_of and not (transcribing and cfg.data["midi"] is None) else None,
            }
            _log(run_dir, f"run folder {run_dir}")
            done = []
            for name, notebook, params in plan:
                entry = {"step": name, "notebook": str(notebook), "parameters": params, "status": "running"}
                record["notebooks"].append(entry)
                write_json(run_dir / "run.json", record)
                out = run_dir / notebook.name
                _log(run_dir, f"{notebook.name}: running")
                try:
                    entry["seconds"] = round(run_notebook(notebook, out, params, cfg.kernel, cfg.cell_timeout), 1)
                except NotebookFailed as err:
                    entry.update(status="failed", error=str(err))
                    raise
                entry.update(status="ok", executed=str(out))
                _log(run_dir, f"{notebook.name}: done in {entry['seconds']} s")
                if name == "mp3_to_midi" and "melody" in params_of and record["data"]["midi"] is None:
                    record["data"]["midi"] = count_data(Path(params_of["melody"]["MIDI_DIR"]), MIDI_EXTS)
                done.append(name)
            cands = _candidates(cfg, run_dir, done)
            missing = [KIND_OF_STEP[s] for s in done if s in KIND_OF_STEP
                       and not any(c["kind"] == KIND_OF_STEP[s] for c in cands)]
            if missing:
                raise EmolibError(f"the notebooks finished but wrote no {missing} candidate under "
                                  f"{run_dir / 'candidates'}", run_dir)
            for cand in cands:
                record["models"].append(_gate_and_promote(cfg, cand, run_dir.name))
            record["status"] = "ok"
        except NotebookFailed as err:
            record.update(status="failed", error=str(err))
            raise
        except EmolibError as err:
            record.update(status="failed", error=str(err))
            raise
        except (Interrupted, KeyboardInterrupt) as err:
            record.update(status="interrupted", error=f"interrupted ({err or 'signal'}); no promotion after this point")
            raise
        except Exception as err:
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            record["finished"] = _now_iso()
            with contextlib.suppress(OSError):
                from emolib.files import write_json

                write_json(run_dir / "run.json", record)
                append_history(cfg.history, record)
            decisions = ", ".join(f"{m['name']} {'promoted' if m['promoted'] else 'kept current'}"
                                  for m in record["models"])
            _log(run_dir, f"{record['status']}" + (f": {decisions}" if decisions else "")
                 + (f" ({record['error']})" if record["error"] else ""))
        return record


def _record_killed_runs(cfg: Config) -> list[str]:
    """Runs whose run.json still says `running` (we hold the lock, so they died): mark them killed."""
    from emolib.files import write_json

    killed = []
    for path in sorted(cfg.runs_dir.glob("*/run.json")) if cfg.runs_dir.is_dir() else []:
        record = read_metrics(path)
        if record and record.get("status") == "running":
            record.update(status="killed", error="the process was killed (no promotion after this point)")
            write_json(path, record)
            append_history(cfg.history, record)
            killed.append(record.get("run", path.parent.name))
    return killed


def _gate_and_promote(cfg: Config, cand: dict[str, Any], stamp: str) -> dict[str, Any]:
    rule = cfg.gates[cand["kind"]]
    model = rule["model"]
    cand_dir, cur_dir = cand["candidate"], cand["current"]
    cand_metrics = read_metrics(cand_dir / "metrics.json")
    cur_exists = (cur_dir / model).exists()
    decision = gate(cand_metrics, read_metrics(cur_dir / "metrics.json"), rule, current_exists=cur_exists)
    if decision.promote and not (cand_dir / model).is_file():
        decision = Decision(False, f"candidate has metrics but no {model}", decision.candidate, decision.current)
    if decision.promote and rule.get("verify_load", True):
        problem = verify_loads(cand_dir / model, list(rule.get("imports") or []), rule.get("loader"))
        if problem:
            decision = Decision(False, problem, decision.candidate, decision.current)
    entry = {"kind": cand["kind"], "name": cand["name"], "metric": rule["metric"], "mode": rule["mode"],
             "margin": rule["margin"], "candidate": decision.candidate, "current": decision.current,
             "promoted": decision.promote, "reason": decision.reason, "candidate_dir": str(cand_dir),
             "model_dir": str(cur_dir), "previous_version": None,
             "candidate_metrics": _scalars(cand_metrics or {})}
    if decision.promote:
        rel = cur_dir.relative_to(cfg.models_dir) if cur_dir.is_relative_to(cfg.models_dir) else Path(cur_dir.name)
        files = model_files(cand_dir, model, rule.get("exclude") or ())
        previous = promote(cand_dir, cur_dir, files, cfg.models_dir / "versions" / rel,
                           stamp, cfg.keep_versions)
        entry["previous_version"] = None if previous is None else str(previous)
    return entry


def _scalars(metrics: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """The numbers of a metrics dict, nested ones as dotted keys (two levels), for the history."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if _number(v) is not None:
            out[prefix + k] = float(v)
        elif isinstance(v, Mapping) and depth > 1 and k not in ("history", "parameters"):
            out.update(_scalars(v, f"{prefix}{k}.", depth - 1))
    return out


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(config_path: str | os.PathLike, check_only: bool = False) -> int:
    """CLI entry: run, print one JSON line per model decision and a summary line; the exit code.

    ``check_only``: validate the config, notebooks and data folders, print the plan, run nothing.

    0: the run finished (whether or not anything was promoted); 1: a notebook failed, bad config,
    or another retrain holds the lock (the error names the notebook and cell / the file);
    143/130: stopped by SIGTERM/SIGINT (current models untouched).
    """
    from emolib.cli import emit  # JSON lines go where the CLI keeps them, whatever libraries print

    if check_only:
        try:
            for step in check(config_path):
                emit(step)
        except EmolibError as err:
            print(f"emolib: error: {err}", file=sys.stderr, flush=True)
            return 1
        return 0
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        record = run(config_path)
    except EmolibError as err:
        print(f"emolib: error: {err}", file=sys.stderr, flush=True)
        return 1
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"emolib: retrain interrupted ({err or 'SIGINT'}); current models untouched", file=sys.stderr, flush=True)
        return 143 if str(err) == "SIGTERM" else 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for m in record["models"]:
        emit({k: m[k] for k in ("name", "metric", "candidate", "current", "promoted", "reason")})
    emit({"run": record["run"], "status": record["status"], "run_dir": record["run_dir"],
          "promoted": [m["name"] for m in record["models"] if m["promoted"]]})
    return 0
