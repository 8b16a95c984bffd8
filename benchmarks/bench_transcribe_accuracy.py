"""Transcription accuracy against ground truth: MIDI -> FluidSynth audio -> MP3 -> basic-pitch -> MIDI.

Takes N clips per emotion from ``<data>/music/midi/<emotion>/`` (EMOPIA clips, chosen with a
seeded shuffle), renders each with ``emolib.audio.render`` (FluidSynth, pretty_midi's soundfont),
encodes it to MP3 with soundfile, transcribes the MP3 folder with ``emolib.transcribe.transcribe_tree``
and scores every transcription against its source MIDI with mir_eval's note onset F-measure
(50 ms onset tolerance, exact pitch, offsets ignored). Prints one JSON line per clip, then per-emotion
and overall means; ``--out`` also writes them as JSON. Goal: mean F1 >= 0.75.

    python benchmarks/bench_transcribe_accuracy.py                 # 10 clips per emotion, defaults
    python benchmarks/bench_transcribe_accuracy.py --work /tmp/acc --onset-threshold 0.6   # reuse renders
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import MUSIC_EMOTIONS, audio, transcribe
from emolib.paths import data_root


def pick_clips(midi_dir: Path, per_emotion: int, seed: int) -> dict[str, list[Path]]:
    """``per_emotion`` EMOPIA clips per emotion folder, reproducibly shuffled by ``seed``."""
    chosen = {}
    for emotion in MUSIC_EMOTIONS:
        files = sorted((midi_dir / emotion).glob("emopia_*.mid")) or sorted((midi_dir / emotion).glob("*.mid"))
        random.Random(f"{seed}-{emotion}").shuffle(files)
        chosen[emotion] = files[:per_emotion]
    return chosen


def reference_notes(midi) -> tuple[np.ndarray, np.ndarray]:
    """(intervals [n,2] seconds, pitches Hz) of every non-drum note."""
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    notes.sort(key=lambda n: (n.start, n.pitch))
    intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes]).reshape(-1, 2)
    pitches = 440.0 * 2.0 ** ((np.array([n.pitch for n in notes], dtype=float) - 69) / 12)
    return intervals, pitches


def onset_f1(ref_midi, est_midi) -> dict[str, float]:
    import mir_eval

    ref_i, ref_p = reference_notes(ref_midi)
    est_i, est_p = reference_notes(est_midi)
    if len(est_p) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, pitch_tolerance=50.0, offset_ratio=None)
    return {"precision": p, "recall": r, "f1": f}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midi-dir", type=Path, default=None, help="default: <data_root>/music/midi")
    ap.add_argument("--per-emotion", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep rendered MP3s/MIDI here (reused on rerun)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--onset-threshold", type=float, default=transcribe.Settings.onset_threshold)
    ap.add_argument("--frame-threshold", type=float, default=transcribe.Settings.frame_threshold)
    ap.add_argument("--min-note-ms", type=float, default=transcribe.Settings.min_note_ms)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import pretty_midi
    import soundfile as sf

    midi_dir = args.midi_dir or data_root() / "music" / "midi"
    work = args.work or Path(tempfile.mkdtemp(prefix="emolib-acc-"))
    mp3_dir, est_dir = work / "mp3", work / "midi"
    clips = pick_clips(midi_dir, args.per_emotion, args.seed)
    started = time.perf_counter()
    for emotion, files in clips.items():
        for src in files:
            dest = mp3_dir / emotion / (src.stem + ".mp3")
            if not dest.exists():
                wav = audio.render(pretty_midi.PrettyMIDI(str(src)), sample_rate=args.sample_rate)
                dest.parent.mkdir(parents=True, exist_ok=True)
                sf.write(dest, wav, args.sample_rate, format="MP3")
    render_s = time.perf_counter() - started
    settings = transcribe.Settings(onset_threshold=args.onset_threshold, frame_threshold=args.frame_threshold,
                                   min_note_ms=args.min_note_ms)
    summary = transcribe.transcribe_tree(mp3_dir, est_dir, workers=args.workers, force=True, settings=settings,
                                         progress=sys.stderr.isatty())
    rows = []
    for emotion, files in clips.items():
        for src in files:
            est = est_dir / emotion / (src.stem + ".mid")
            est_midi = pretty_midi.PrettyMIDI(str(est)) if est.exists() else pretty_midi.PrettyMIDI()
            row = {"emotion": emotion, "clip": src.name, **onset_f1(pretty_midi.PrettyMIDI(str(src)), est_midi)}
            rows.append(row)
            print(json.dumps(row))
    per_emotion = {e: {k: float(np.mean([r[k] for r in rows if r["emotion"] == e]))
                       for k in ("precision", "recall", "f1")} for e in clips}
    result = {
        "clips": len(rows), "mean_f1": float(np.mean([r["f1"] for r in rows])),
        "mean_precision": float(np.mean([r["precision"] for r in rows])),
        "mean_recall": float(np.mean([r["recall"] for r in rows])),
        "per_emotion": per_emotion, "settings": dataclasses.asdict(settings),
        "transcribe": {k: summary[k] for k in ("converted", "failed", "audio_seconds", "wall_seconds", "realtime",
                                               "workers")},
        "render_seconds": round(render_s, 1), "load_average": os.getloadavg(), "seed": args.seed,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(result))
    print(f"note onset F1 (50 ms, exact pitch) over {len(rows)} clips: mean {result['mean_f1']:.3f} "
          f"(P {result['mean_precision']:.3f}, R {result['mean_recall']:.3f}); "
          + ", ".join(f"{e} {v['f1']:.3f}" for e, v in per_emotion.items()), file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
