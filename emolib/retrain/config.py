"""retrain.yaml: parsing, checks that name the file and the key, and the plan a run would execute."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emolib.errors import EmolibError
from emolib.paths import MODELS_DIR, REPO_ROOT, data_root
from emolib.retrain.notebooks import check_parameters

__all__ = ["STEPS", "KIND_OF_STEP", "DEFAULT_GATES", "Config", "load_config", "plan", "check_plan",
           "dry_run"]

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
    "face": {"metric": "val.macro_f1", "mode": "max", "margin": 0.0, "model": "model.keras",
             "comparable": ["classes"], "verify_load": True, "imports": [],
             "loader": "emolib.face_model:load_face_model",
             "exclude": ["*.mid", "*.wav"]},
    "melody": {"metric": "val.nll", "mode": "min", "margin": 0.0, "model": "generator.npz",
               "comparable": ["data.midi_dir", "config.seed"], "verify_load": True, "imports": [],
               "loader": "emolib.melody:load_bundle_file", "exclude": ["*.mid", "*.wav"]},
}
_TOP_KEYS = {"models_dir", "runs_dir", "history", "keep_versions", "kernel", "cell_timeout", "data", "notebooks",
             "gate"}
_DATA_KEYS = ("root", "fer2013", "midi", "mp3", "midi_out")

#: One planned notebook run: (step name, notebook path, parameters).
PlanItem = tuple[str, Path, dict[str, Any]]


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


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise EmolibError("retrain config not found", path) from None
    except yaml.YAMLError as err:
        raise EmolibError(f"not valid YAML: {err}".splitlines()[0], path) from None
    if not isinstance(raw, dict):
        raise EmolibError("expected a mapping at the top level", path)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise EmolibError(f"unknown key(s) {unknown}; known: {sorted(_TOP_KEYS)}", path)
    return raw


def _resolver(base: Path) -> Callable[..., Path | None]:
    """``resolve(value, default)``: a config path made absolute against ``base`` (the config's folder)."""
    def resolve(value: Any, default: Path | None = None) -> Path | None:
        if value is None or value == "":
            return default
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    return resolve


def _mapping(raw: Any, name: str, known: Iterable[str], path: Path) -> dict[str, Any]:
    """A top-level section of retrain.yaml: absent means empty; it must be a mapping of known keys."""
    section = raw or {}
    if not isinstance(section, dict):
        raise EmolibError(f"`{name}` must be a mapping", path)
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise EmolibError(f"unknown {name} key(s) {unknown}; known: {', '.join(known)}", path)
    return section


def _data(raw: Any, resolve: Callable[..., Path | None], runs_dir: Path, path: Path) -> dict[str, Path | None]:
    data_raw = _mapping(raw, "data", _DATA_KEYS, path)
    root = resolve(data_raw.get("root")) or data_root()
    return {
        "root": root,
        "fer2013": resolve(data_raw.get("fer2013"), root / "fer2013"),
        "mp3": resolve(data_raw.get("mp3")),
        "midi_out": resolve(data_raw.get("midi_out"), runs_dir / "midi_from_mp3"),
        "midi": resolve(data_raw.get("midi")),
    }


def _steps(raw: Any, resolve: Callable[..., Path | None], path: Path) -> dict[str, dict[str, Any]]:
    nb_raw = _mapping(raw, "notebooks", STEPS, path)
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
    return steps


def _check_loader(spec: Any, where: str, path: Path) -> None:
    """A gate's ``module:function`` loader must exist now, not after hours of training."""
    if not spec:
        return
    import importlib

    module, _, name = str(spec).partition(":")
    try:
        loader = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        loader = None
    if not callable(loader):
        raise EmolibError(f"{where} {spec!r} is not an importable module:function (e.g. "
                          "emolib.face_model:load_face_model)", path)


def _gates(raw: Any, path: Path) -> dict[str, dict[str, Any]]:
    gate_raw = raw or {}
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
        _check_loader(rule.get("loader"), f"gate.{kind}.loader", path)
        gates[kind] = rule
    unknown = sorted(set(gate_raw) - set(DEFAULT_GATES))
    if unknown:
        raise EmolibError(f"unknown gate kind(s) {unknown}; known: {list(DEFAULT_GATES)}", path)
    return gates


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate ``retrain.yaml``; relative paths resolve against the file's folder."""
    path = Path(path).expanduser().resolve()
    raw = _read_yaml(path)
    resolve = _resolver(path.parent)
    models_dir = resolve(raw.get("models_dir"), MODELS_DIR)
    runs_dir = resolve(raw.get("runs_dir"), path.parent / "runs")
    assert models_dir is not None and runs_dir is not None
    history = resolve(raw.get("history"), runs_dir / "history.jsonl")
    assert history is not None
    data = _data(raw.get("data"), resolve, runs_dir, path)
    steps = _steps(raw.get("notebooks"), resolve, path)
    if data["mp3"] is None:
        steps["mp3_to_midi"]["enabled"] = False
    timeout = raw.get("cell_timeout")
    return Config(path=path, models_dir=models_dir, runs_dir=runs_dir, history=history,
                  keep_versions=int(raw.get("keep_versions", 5)), kernel=str(raw.get("kernel", "python3")),
                  cell_timeout=None if timeout is None else int(timeout), data=data, steps=steps,
                  gates=_gates(raw.get("gate"), path), raw=raw)


def plan(cfg: Config, run_dir: Path) -> list[PlanItem]:
    """(step, notebook, parameters) for every enabled step, in run order."""
    out = []
    midi_out = cfg.data["midi_out"]
    root = cfg.data["root"]
    assert root is not None
    transcribing = cfg.steps["mp3_to_midi"]["enabled"]
    midi = cfg.data["midi"] or (midi_out if transcribing else root / "music" / "midi")
    injected = {
        "mp3_to_midi": {"MP3_DIR": str(cfg.data["mp3"]), "MIDI_OUT_DIR": str(midi_out)},
        "emotion_cnn": {"DATA_DIR": str(cfg.data["fer2013"]),
                        "OUT_MODEL": str(run_dir / "candidates" / "face" / cfg.gates["face"]["model"])},
        "melody": {"MIDI_DIR": str(midi), "OUT_DIR": str(run_dir / "candidates" / "melody")},
    }
    for name in STEPS:
        step = cfg.steps[name]
        if step["enabled"]:
            out.append((name, step["notebook"], {**step["parameters"], **injected[name]}))
    return out


def check_plan(cfg: Config, steps: list[PlanItem]) -> None:
    """Fail fast, before hours of training: every notebook has every parameter, every input folder exists."""
    if not steps:
        raise EmolibError("every notebook step is disabled; nothing to do", cfg.path)
    produced = steps[0][2].get("MIDI_OUT_DIR")
    for _name, notebook, params in steps:
        check_parameters(notebook, params)
        for key in ("MP3_DIR", "DATA_DIR", "MIDI_DIR"):
            if key not in params or params[key] == produced:
                continue  # not this step's input, or 02 is about to write it
            if not Path(params[key]).is_dir():
                raise EmolibError(f"data folder for {notebook.name} ({key}) not found; set data.* in "
                                  f"{cfg.path.name} or $EMOLIB_DATA", params[key])


def dry_run(config: str | os.PathLike | Config) -> list[dict[str, Any]]:
    """Check a config without running anything; returns the plan (step, notebook, parameters) it would run.

    ``<run>`` stands for the run folder a real run would create.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    steps = plan(cfg, cfg.runs_dir / "<run>")
    check_plan(cfg, steps)
    return [{"step": n, "notebook": str(nb), "parameters": p} for n, nb, p in steps]
