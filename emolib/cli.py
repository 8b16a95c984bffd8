"""The `emolib` command: JSON lines (one object per item) on stdout, human progress on stderr.

Exit codes: 0 success; 1 when any item failed (its error is one line on stderr and in its JSON
line); 2 for usage errors (unknown subcommand, bad flag).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from emolib import MUSIC_EMOTIONS, __version__
from emolib.errors import EmolibError

__all__ = ["emit", "warn", "dataclass_options", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: Where JSON lines go. While a command runs, main() points sys.stdout at stderr so that chatter
#: printed by libraries (pyfluidsynth announces where it found its library) never corrupts them.
_json_out = None


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object as one line on stdout."""
    out = _json_out or sys.stdout
    out.write(json.dumps(obj, default=_json_default) + "\n")
    out.flush()


def _json_default(value: Any) -> Any:
    """numpy values and paths as files.jsonable makes them; anything else as its str()."""
    from emolib.files import jsonable

    try:
        return jsonable(value)
    except TypeError:
        return str(value)


def warn(message: str) -> None:
    """Print one human-readable line on stderr."""
    print(message, file=sys.stderr, flush=True)


def _each_photo(photos: Sequence[str], handle: Callable[[str], None]) -> int:
    """Handle every photo; a bad one gets its one-line error (stderr and a JSON line), the rest go on."""
    failed = 0
    for photo in photos:
        try:
            handle(photo)
        except EmolibError as err:
            failed += 1
            warn(f"emolib: error: {err}")
            emit({"image": photo, "error": str(err)})
    return 1 if failed else 0


# --------------------------------------------------------------------------- faces
def _face_model(path: str | None):
    """A ``.keras`` path loads with Keras; anything else (None, a folder, an ``.onnx`` file) is the ONNX model."""
    import emolib.face_model as face_model

    if path is not None and Path(path).suffix == ".keras":
        return face_model.load_keras_model(path)
    return face_model.load_face_model(path)


def _faces_predict(args: argparse.Namespace) -> int:
    model = _face_model(args.model)

    def predict(photo: str) -> None:
        for row in model.predict_photo(photo, all_faces=True):
            emit({"image": photo, **row})

    return _each_photo(args.photos, predict)


def _faces_evaluate(args: argparse.Namespace) -> int:
    import emolib.face_model as face_model

    emit(face_model.evaluate_dir(args.dir, model=_face_model(args.model), split=args.split,
                                 limit_per_class=args.limit, progress=True))
    return 0


def _faces_train(args: argparse.Namespace) -> int:
    import shlex

    import emolib.face_train as face_train

    config = face_train.FaceTrainConfig(**_config_values(args, face_train.FaceTrainConfig))
    metrics = face_train.train(args.data, args.out, config, command=shlex.join(["emolib", *args.argv]))
    emit({k: v for k, v in metrics.items()
          if k not in ("history", "parameters", "config", "val", "test_without_tta")})
    return 0


def _faces_export(args: argparse.Namespace) -> int:
    import emolib.face_model as face_model

    src = Path(args.model)
    keras_path = src / "model.keras" if src.is_dir() else src
    onnx_path = face_model.export_onnx(keras_path, Path(args.out) if args.out else keras_path.with_suffix(".onnx"))
    command = f"emolib faces export {args.model}" + (f" --out {args.out}" if args.out else "")
    record = {"file": onnx_path.name, "command": command, "bytes": onnx_path.stat().st_size}
    metrics_path = keras_path.parent / "metrics.json"
    if onnx_path.parent == keras_path.parent and metrics_path.is_file():  # the card says how its ONNX was made
        from emolib.files import write_json

        write_json(metrics_path, {**json.loads(metrics_path.read_text()), "onnx_export": record})
    emit({"model": str(keras_path), "onnx": str(onnx_path), "bytes": record["bytes"]})
    return 0


# --------------------------------------------------------------------------- music
def _transcribe(args: argparse.Namespace) -> int:
    import emolib.transcribe as transcribe

    settings = transcribe.Settings(**_config_values(args, transcribe.Settings))

    def on_result(row: dict[str, Any]) -> None:
        if row["status"] == "failed":
            warn(f"emolib: error: {row['error']}")
        emit(row)

    summary = transcribe.transcribe_tree(
        args.in_dir, args.out_dir, workers=args.workers, force=args.force,
        report=args.report, on_result=on_result, settings=settings, progress=not args.quiet,
    )
    if not summary["files"]:
        warn(f"emolib: warning: no audio files under {args.in_dir} (expected IN_DIR/<emotion>/*.mp3)")
    warn(f"transcribe: converted {summary['converted']}, skipped {summary['skipped']} (up to date), "
         f"failed {summary['failed']}; {summary['audio_seconds']:.0f} s of audio in {summary['wall_seconds']:.1f} s"
         f" -> {args.out_dir} (report: {summary['report']})")
    emit(summary)
    return 1 if summary.get("failed") else 0


def _config_values(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """The values of the flags made by :func:`dataclass_options` for the dataclass ``config``, by field name
    (argparse's lists back as tuples, where the field is a tuple)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _training_config(args: argparse.Namespace, base: Any) -> Any:
    """The TrainConfig of a melody command: ``base`` with the flags' values (``--minutes 0``: no budget)."""
    import emolib.melody_train as melody_train

    config = melody_train.config_from(base, **_config_values(args, base))
    return dataclasses.replace(config, minutes=None) if config.minutes == 0 else config


def _melody_pretrain(args: argparse.Namespace) -> int:
    import emolib.melody as melody
    import emolib.melody_train as melody_train

    config = _training_config(args, melody_train.PRETRAIN)
    model = melody.ModelConfig(**_config_values(args, melody.ModelConfig))
    emit(melody_train.pretrain(args.pretrain, args.midi, args.out, config=config, max_files=args.max_files,
                               model_config=model, init=args.init))
    return 0


def _melody_train(args: argparse.Namespace) -> int:
    import emolib.melody_train as melody_train

    base = None if str(args.base).lower() == "none" else args.base
    config = _training_config(args, melody_train.FINE_TUNE)
    model = dataclasses.replace(melody_train.ARCHITECTURE, held_input=args.held_input)
    for metrics in melody_train.fine_tune_all(args.midi, args.out, emotions=args.emotions, base=base,
                                              config=config, max_files=args.max_files, model_config=model):
        emit({k: v for k, v in metrics.items() if k != "history"})
    return 0


def _generate(args: argparse.Namespace) -> int:
    from emolib import guidance, notes, steer

    steering = steer.steering_for(args.emotion, args.steering, repeat=args.repeat)  # checks the values first
    gen = guidance.generator(args.emotion, args.model, guidance.GUIDANCE * args.steering)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(args.count):
        seed = None if args.seed is None else args.seed + k
        midi = gen.generate(seconds=args.seconds, temperature=args.temperature, top_p=args.top_p, seed=seed,
                            steer=steer.hook(args.emotion, steering))
        path = out / f"{args.emotion}_{k}.mid"
        notes.write_midi(midi, path)
        emit({"path": str(path), **notes.describe(midi)})
    return 0


def _image2music(args: argparse.Namespace) -> int:
    import emolib.pipeline as pipeline

    stems: dict[str, int] = {}  # photos with the same name (a/face.jpg, b/face.jpg) get face, face-2, ...

    def compose(photo: str) -> None:
        result = pipeline.image_to_music(
            photo, seconds=args.seconds, seed=args.seed, temperature=args.temperature,
            emotion=args.emotion, blend=args.blend, steering=args.steering, top_p=args.top_p, repeat=args.repeat,
        )
        stem = Path(photo).stem or "photo"
        stems[stem] = stems.get(stem, 0) + 1
        summary = result.save(args.out, stem if stems[stem] == 1 else f"{stem}-{stems[stem]}")
        emit(summary)
        face = "face" if result.face_found else "whole image (no face found)"
        warn(f"{photo}: {result.emotion} {face} -> {result.music_emotion} music, {result.seconds:.1f} s "
             f"-> {summary['midi']}, {summary['wav']}")

    return _each_photo(args.photos, compose)


def _retrain(args: argparse.Namespace) -> int:
    """Run (or with ``--check`` only plan) a retrain: one JSON line per model decision and a summary line.

    0: the run finished (whether or not anything was promoted); 1: a notebook failed, bad config,
    or another retrain holds the lock (the error names the notebook and cell / the file);
    143/130: stopped by SIGTERM/SIGINT (current models untouched).
    """
    import signal

    import emolib.retrain as retrain

    if args.check:
        for step in retrain.dry_run(args.config):
            emit(step)
        return 0

    def interrupted(signum: int, _frame: Any) -> None:
        raise retrain.Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        record = retrain.retrain(args.config)
    except (retrain.Interrupted, KeyboardInterrupt) as err:
        warn(f"emolib: retrain interrupted ({err or 'SIGINT'}); current models untouched")
        return 143 if str(err) == "SIGTERM" else 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for m in record["models"]:
        emit({k: m[k] for k in ("name", "metric", "candidate", "current", "promoted", "reason")})
    emit({"run": record["run"], "status": record["status"], "run_dir": record["run_dir"],
          "promoted": [m["name"] for m in record["models"] if m["promoted"]]})
    return 0


# --------------------------------------------------------------------------- judge
def _judge_train(args: argparse.Namespace) -> int:
    import emolib.judge as judge

    metrics = judge.train(args.midi, args.out, emotions=args.emotions, seed=args.seed,
                          test_fraction=args.test_fraction, cache_dir=args.cache)
    emit({k: metrics[k] for k in ("model", "test_accuracy", "test_accuracy_per_emotion", "test_confusion", "clips")}
         | {"out": str(args.out or judge.DEFAULT_MODEL.parent)})
    return 0


def _judge_predict(args: argparse.Namespace) -> int:
    import emolib.judge as judge

    model = judge.load_judge(args.model)
    failed = 0
    for path in args.midis:
        try:
            probs = model.predict_proba(path)
            emit({"midi": path, "emotion": max(probs, key=lambda e: probs[e]), "probabilities": probs})
        except EmolibError as err:
            failed += 1
            warn(f"emolib: error: {err}")
            emit({"midi": path, "error": str(err)})
    return 1 if failed else 0


# --------------------------------------------------------------------------- parser
def dataclass_options(sp: argparse.ArgumentParser, defaults: Any, helps: dict[str, str] | None = None,
                      overrides: dict[str, dict[str, Any]] | None = None) -> None:
    """One flag per field of the frozen dataclass instance ``defaults`` (``--field-name``), defaulting to its value.

    A field's ``metadata`` may hold ``help`` and ``cli`` (argparse keywords, plus ``flag``: the documented
    flag when not ``--field-name``, which then stays accepted, and ``aliases``: more flags);
    ``helps`` and ``overrides`` (by field name) add to them. Booleans get ``--x/--no-x``; tuples two values
    (LOW HIGH) unless told otherwise.
    """
    import dataclasses

    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        cli = {**dict(f.metadata.get("cli") or {}), **(overrides or {}).get(f.name, {})}
        own = "--" + f.name.replace("_", "-")
        flag = cli.pop("flag", own)
        aliases = ([own] if flag != own else []) + list(cli.pop("aliases", []))
        kwargs: dict[str, Any] = {"dest": f.name, "default": value,
                                  "help": (helps or {}).get(f.name) or f.metadata.get("help") or f"default {value}"}
        if isinstance(value, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(value, tuple):
            kwargs.update(type=type(value[0]) if value else int, nargs=2, metavar=("LOW", "HIGH"))
        elif value is not None:
            kwargs["type"] = type(value)
        kwargs.update(cli)
        if isinstance(value, tuple) and kwargs.get("nargs") == "+":
            kwargs["default"] = list(value)
        sp.add_argument(flag, *aliases, **kwargs)


# --------------------------------------------------------------------------- app
def _app(args: argparse.Namespace) -> int:
    from emolib.app import serve

    return serve(args.host, args.port, args.out, cull_minutes=args.cull_minutes, pool=args.pool,
                 open_browser=args.open)


def build_parser() -> argparse.ArgumentParser:
    """The full `emolib` argument parser (also used by tests and docs)."""
    p = _Parser(prog="emolib", description="Photo -> emotion -> music. JSON lines on stdout, progress on stderr.")
    p.add_argument("--version", action="version", version=f"emolib {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(parent, name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    def group(name: str, help: str):
        """A subcommand with actions of its own (``emolib NAME ACTION``)."""
        actions = sub.add_parser(name, help=help, description=help).add_subparsers(
            dest=f"{name}_command", metavar="ACTION", parser_class=_Parser)
        actions.required = True
        return actions

    fsub = group("faces", "find faces and recognise their emotion; train/evaluate/export the CNN")
    model_help = ("a face model: model folder or .onnx (run time, no TensorFlow) or .keras (Keras) "
                  "(default: the shipped one)")
    sp = command(fsub, "predict", "emotion probabilities for every face in each photo", _faces_predict)
    sp.add_argument("photos", nargs="+", metavar="PHOTO")
    sp.add_argument("--model", help=model_help)
    sp = command(fsub, "evaluate", "score a folder of dataset faces (DIR/<class>/*.jpg, already cropped)",
                 _faces_evaluate)
    sp.add_argument("dir", metavar="DIR", help="DIR/<class>/, DIR/<split>/<class>/ or FER2013 <class>.zip files")
    sp.add_argument("--model", help=model_help)
    sp.add_argument("--split", default=None, help="train or test: DIR/<split>/ or that part of the zips (zips: test)")
    sp.add_argument("--max-files", "--limit", dest="limit", type=int, default=None,
                    help="score at most this many images per class (seeded sample)")
    import emolib.face_train as face_train

    sp = command(fsub, "train", "train the 5+5-layer CNN on train/<class>/ folders or FER2013 zips; writes "
                 "model.keras and its ONNX export model.onnx", _faces_train)
    sp.add_argument("--data", required=True, help="folder with train/<class>/ (and test/<class>/) or <class>.zip files")
    sp.add_argument("--out", required=True,
                    help="model path to write (.keras); model.onnx and metrics.json go beside it")
    dataclass_options(sp, face_train.FaceTrainConfig())
    sp = command(fsub, "export", "export a .keras face model to ONNX (what photo -> music loads)", _faces_export)
    sp.add_argument("model", metavar="MODEL", help="a .keras file or a folder holding model.keras")
    sp.add_argument("--out", default=None, help="ONNX path (default: the .keras path with .onnx)")

    sp = command(sub, "transcribe", "MP3/audio folders -> MIDI folders with basic-pitch (resumable, parallel)",
                 _transcribe)
    sp.add_argument("in_dir", metavar="IN_DIR")
    sp.add_argument("out_dir", metavar="OUT_DIR")
    sp.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    sp.add_argument("--force", action="store_true", help="redo files whose MIDI is already up to date")
    sp.add_argument("--report", default=None, help="JSON report path (default: OUT_DIR/transcribe_report.json)")
    from emolib.transcribe import Settings  # light: basic-pitch is imported only when transcribing

    dataclass_options(sp, Settings())  # the note-decoding flags are the recipe's fields
    sp.add_argument("--quiet", action="store_true", help="no progress bar on stderr")

    def midi_options(sp: argparse.ArgumentParser) -> None:
        """The training data options of the commands that learn from emotion-labelled MIDI."""
        sp.add_argument("--midi", default=None, help="folder with <emotion>/*.mid (default: DATA_ROOT/music/midi)")
        sp.add_argument("--emotions", nargs="+", default=list(MUSIC_EMOTIONS), metavar="EMOTION")

    def training_options(sp: argparse.ArgumentParser, defaults: Any) -> None:
        """One flag per field of a melody TrainConfig, defaulting to ``defaults``' value."""
        helps = {"minutes": "time budget for the fitting in minutes (0: none)",
                 "transpose": "transposition range in semitones (LOW HIGH)",
                 "tempo": "tempo change drawn from 1 +- this", "precision": "float32 or mixed_bfloat16",
                 "strategy": "tf.distribute strategy: default, mirrored, multiworker"}
        dataclass_options(sp, defaults, helps=helps, overrides={"minutes": {"type": float}})

    import emolib.melody_train as melody_train
    from emolib.steer import DEFAULT_REPEAT as repeat_default
    from emolib.steer import DEFAULT_STRENGTH as steer_default

    msub = group("melody", "pretrain the base note LSTM; fine-tune one LSTM per emotion")
    sp = command(msub, "pretrain", "pretrain the base LSTM on POP909 + the labelled clips' training songs",
                 _melody_pretrain)
    sp.add_argument("--pretrain", default=None, help="POP909 folder (default: DATA_ROOT/music/pretrain/pop909)")
    sp.add_argument("--midi", default=None, help="folder with <emotion>/*.mid (default: DATA_ROOT/music/midi)")
    sp.add_argument("--out", required=True, help="folder for generator.npz + metrics.json + loss.png")
    sp.add_argument("--max-files", type=int, default=None, help="at most this many files per folder (smoke runs)")
    sp.add_argument("--init", default=None, help="a base to go on from, with or without --held-input (default: none)")
    training_options(sp, melody_train.PRETRAIN)
    dataclass_options(sp, melody_train.ARCHITECTURE, overrides={"embed": {
        "nargs": 4, "metavar": "N", "help": "embedding sizes: step, pitch, duration, velocity (default 32 96 32 16)"}})
    sp = command(msub, "train", "fine-tune one LSTM per emotion on MIDI_DIR/<emotion>/*.mid from the base",
                 _melody_train)
    midi_options(sp)
    sp.add_argument("--out", required=True, help="folder for <emotion>/generator.npz + metrics.json + loss.png")
    sp.add_argument("--base", default=str(melody_train.BASE_DIR),
                    help="pretrained base to start from (default: the shipped one; 'none': train from scratch)")
    sp.add_argument("--max-files", type=int, default=None, help="at most this many MIDI files per emotion")
    sp.add_argument("--held-input", action=argparse.BooleanOptionalAction, default=melody_train.ARCHITECTURE.held_input,
                    help="tell it the keys down")
    training_options(sp, melody_train.FINE_TUNE)

    def music_options(sp: argparse.ArgumentParser) -> None:
        """The options every music-making command shares."""
        sp.add_argument("--out", required=True)
        sp.add_argument("--seconds", type=float, default=40.0)
        sp.add_argument("--seed", type=int, default=None)
        sp.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: most likely)")
        sp.add_argument("--top-p", type=float, default=None, help="nucleus (default: 0.9 for pitch, 0.95 for the rest)")
        sp.add_argument("--steering", type=float, default=steer_default,
                        help="push toward the emotion: guidance from the base, a mode nudge, blends' tilts (0: none)")
        sp.add_argument("--repeat", type=float, default=repeat_default,
                        help="chance that a phrase comes back at its end (0: never; with --steering 0: the plain LSTM)")

    sp = command(sub, "generate", "generate new pieces with an emotion's LSTM", _generate)
    sp.add_argument("--emotion", required=True, choices=MUSIC_EMOTIONS)
    sp.add_argument("--count", type=int, default=1)
    sp.add_argument("--model", default=None,
                    help="a melody model folder or its generator.npz (default: the shipped one)")
    music_options(sp)

    sp = command(sub, "image2music", "photo -> emotion -> new music (MIDI + WAV + JSON per photo)", _image2music)
    sp.add_argument("photos", nargs="+", metavar="PHOTO")
    sp.add_argument("--emotion", default=None, help="override the recognised emotion")
    sp.add_argument("--blend", action="store_true",
                    help="let every likely emotion shape the music, not only the most likely one")
    music_options(sp)

    jsub = group("judge", "MIDI emotion classifier: which emotion does a piece carry?")
    sp = command(jsub, "predict", "emotion probabilities of each MIDI file", _judge_predict)
    sp.add_argument("midis", nargs="+", metavar="MIDI")
    sp.add_argument("--model", default=None, help="a judge.json (default: the shipped one)")
    sp = command(jsub, "train", "train the classifier on MIDI_DIR/<emotion>/*.mid (split by song)", _judge_train)
    midi_options(sp)
    sp.add_argument("--out", default=None, help="folder for judge.json + metrics.json (default: the shipped one)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--test-fraction", type=float, default=0.2)
    sp.add_argument("--cache", default=None, help="folder to cache per-file features in (speeds up reruns)")

    sp = command(sub, "app", "serve the app (upload/camera -> music) alone as a web page, for class demos", _app)
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (0.0.0.0: the whole network can reach it; a warning says so)")
    sp.add_argument("--port", type=int, default=8866)
    sp.add_argument("--out", default="emolib_app_out",
                    help="visitors' files go to OUT/visitor-*/ (default %(default)s)")
    sp.add_argument("--cull-minutes", type=float, default=10.0,
                    help="shut down a visitor's kernel after this many idle minutes (0: never; default %(default)s)")
    sp.add_argument("--pool", type=int, default=2, help="preheated kernels kept ready for new visitors (default 2)")
    sp.add_argument("--open", action="store_true", help="open the page in the default browser")

    sp = command(sub, "retrain", "papermill retraining with a promotion gate", _retrain)
    sp.add_argument("--config", required=True, help="retrain.yaml (documented example at the repository root)")
    sp.add_argument("--check", action="store_true",
                    help="validate the config, notebook parameters and data folders; print the plan; run nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emolib` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by training runs as their exact command
    global _json_out
    _json_out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return args.func(args)
    except EmolibError as err:
        warn(f"emolib: error: {err}")
        return 1
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("emolib."):
            warn(f"emolib: error: `emolib {args.command}` is not built yet ({err.name} is missing)")
            return 1
        raise
    except KeyboardInterrupt:
        warn("emolib: interrupted")
        return 130
    finally:
        _json_out = None
