"""Scheduled retraining: run the notebooks with papermill, gate the candidates, promote atomically.

One run (``emolib retrain --config retrain.yaml``, or :func:`retrain`):

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

Modules: ``config`` (retrain.yaml and the plan), ``notebooks`` (papermill), ``gate`` (the
promotion rule), ``promote`` (journaled promotion, versions, lock, history).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from emolib.errors import EmolibError
from emolib.files import write_json
from emolib.retrain.config import DEFAULT_GATES, KIND_OF_STEP, STEPS, Config, check_plan, dry_run, load_config, plan
from emolib.retrain.gate import Decision, gate, metric_value, read_metrics, scalars, verify_loads
from emolib.retrain.notebooks import (
    NotebookFailed,
    check_parameters,
    kernel_imports_this_emolib,
    notebook_parameters,
    run_notebook,
)
from emolib.retrain.promote import (
    JOURNAL,
    LOCK_NAME,
    STAGING_PREFIX,
    append_history,
    model_files,
    now_iso,
    promote,
    read_history,
    recover,
    retrain_lock,
)

__all__ = [
    "retrain", "Interrupted", "count_data",
    # config
    "STEPS", "KIND_OF_STEP", "DEFAULT_GATES", "Config", "load_config", "plan", "check_plan", "dry_run",
    # notebooks
    "NotebookFailed", "notebook_parameters", "check_parameters", "kernel_imports_this_emolib", "run_notebook",
    # gate
    "Decision", "gate", "read_metrics", "metric_value", "verify_loads", "scalars",
    # promote
    "JOURNAL", "STAGING_PREFIX", "LOCK_NAME", "model_files", "promote", "recover", "retrain_lock",
    "append_history", "read_history", "now_iso",
]


class Interrupted(BaseException):
    """SIGTERM/SIGINT arrived: unwinds like KeyboardInterrupt so papermill shuts its kernel down."""


def count_data(path: Path | None, suffixes: tuple[str, ...]) -> dict[str, Any] | None:
    """Files per class folder (``<path>/<class>/*``, ``<path>/<split>/<class>/*`` or FER-style zips)."""
    if path is None:
        return None
    if not path.is_dir():
        return {"path": str(path), "error": "not found"}
    counts: dict[str, int] = {}

    def add(parts: list[str]) -> None:
        if len(parts) >= 2 and parts[-1].lower().endswith(suffixes):
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


def _suffixes() -> dict[str, tuple[str, ...]]:
    """The file suffixes counted per kind of data (one list per media type, owned by its module)."""
    from emolib.audio import AUDIO_SUFFIXES
    from emolib.faces import IMAGE_SUFFIXES
    from emolib.notes import MIDI_SUFFIXES

    return {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "midi": MIDI_SUFFIXES}


def _new_run_dir(runs_dir: Path) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        run = runs_dir / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
    raise EmolibError("could not create a fresh run folder", runs_dir)


def _log(run_dir: Path | None, message: str) -> None:
    print(f"retrain: {message}", file=sys.stderr, flush=True)
    if run_dir is not None:
        with contextlib.suppress(OSError), open(run_dir / "retrain.log", "a") as fh:
            fh.write(f"{now_iso()} {message}\n")


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


def _data_counts(cfg: Config, params_of: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the run trains on, counted per class folder (MIDI counted after 02 when 02 writes it)."""
    suffixes = _suffixes()
    transcribing = "mp3_to_midi" in params_of
    return {
        "fer2013": count_data(cfg.data["fer2013"], suffixes["image"]) if "emotion_cnn" in params_of else None,
        "mp3": count_data(cfg.data["mp3"], suffixes["audio"]) if transcribing else None,
        "midi": count_data(Path(params_of["melody"]["MIDI_DIR"]), suffixes["midi"])
        if "melody" in params_of and not (transcribing and cfg.data["midi"] is None) else None,
    }


def _run_notebooks(cfg: Config, run_dir: Path, record: dict[str, Any]) -> list[str]:
    """Check the plan, then execute its notebooks in order into ``run_dir``; the steps that finished."""
    steps = plan(cfg, run_dir)
    check_plan(cfg, steps)
    params_of = {n: p for n, _, p in steps}
    record["data"] = _data_counts(cfg, params_of)
    _log(run_dir, f"run folder {run_dir}")
    done = []
    for name, notebook, params in steps:
        entry: dict[str, Any] = {"step": name, "notebook": str(notebook), "parameters": params, "status": "running"}
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
            record["data"]["midi"] = count_data(Path(params_of["melody"]["MIDI_DIR"]), _suffixes()["midi"])
        done.append(name)
    return done


def _gate_all(cfg: Config, run_dir: Path, done: list[str], record: dict[str, Any]) -> None:
    """Gate (and promote) every candidate the finished steps wrote; fail when a step wrote none."""
    cands = _candidates(cfg, run_dir, done)
    missing = [KIND_OF_STEP[s] for s in done if s in KIND_OF_STEP
               and not any(c["kind"] == KIND_OF_STEP[s] for c in cands)]
    if missing:
        raise EmolibError(f"the notebooks finished but wrote no {missing} candidate under "
                          f"{run_dir / 'candidates'}", run_dir)
    for cand in cands:
        record["models"].append(_gate_and_promote(cfg, cand, run_dir.name))


def _finish(cfg: Config, run_dir: Path, record: dict[str, Any]) -> None:
    """Write the final record to run.json and the history; log the outcome."""
    record["finished"] = now_iso()
    with contextlib.suppress(OSError):
        write_json(run_dir / "run.json", record)
        append_history(cfg.history, record)
    decisions = ", ".join(f"{m['name']} {'promoted' if m['promoted'] else 'kept current'}"
                          for m in record["models"])
    _log(run_dir, f"{record['status']}" + (f": {decisions}" if decisions else "")
         + (f" ({record['error']})" if record["error"] else ""))


def retrain(config: str | os.PathLike | Config) -> dict[str, Any]:
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
            "run": run_dir.name, "started": now_iso(), "finished": None, "status": "running",
            "run_dir": str(run_dir), "config": str(cfg.path), "models_dir": str(cfg.models_dir),
            "data": {}, "notebooks": [], "models": [], "error": None,
        }
        write_json(run_dir / "run.json", record)  # a run killed outright is found and recorded by the next
        try:
            done = _run_notebooks(cfg, run_dir, record)
            _gate_all(cfg, run_dir, done, record)
            record["status"] = "ok"
        except EmolibError as err:  # NotebookFailed included
            record.update(status="failed", error=str(err))
            raise
        except (Interrupted, KeyboardInterrupt) as err:
            record.update(status="interrupted", error=f"interrupted ({err or 'signal'}); no promotion after this point")
            raise
        except Exception as err:
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            _finish(cfg, run_dir, record)
        return record


def _record_killed_runs(cfg: Config) -> list[str]:
    """Runs whose run.json still says `running` (we hold the lock, so they died): mark them killed."""
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
    """Gate one candidate against its current model; promote it when it wins. Its history entry."""
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
             "candidate_metrics": scalars(cand_metrics or {})}
    if decision.promote:
        rel = cur_dir.relative_to(cfg.models_dir) if cur_dir.is_relative_to(cfg.models_dir) else Path(cur_dir.name)
        files = model_files(cand_dir, model, rule.get("exclude") or ())
        previous = promote(cand_dir, cur_dir, files, cfg.models_dir / "versions" / rel,
                           stamp, cfg.keep_versions)
        entry["previous_version"] = None if previous is None else str(previous)
    return entry
