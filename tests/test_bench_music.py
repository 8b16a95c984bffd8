"""benchmarks/bench_music.py on tiny synthetic MIDI: the two-sample test, the originality search,
the listening folder, the corpus cache and one end-to-end run (no real data needed)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_music")


def musical(rng: np.random.Generator, seconds: float = 20.0) -> pretty_midi.PrettyMIDI:
    """'Real-like': a C-major random-walk melody on an eighth-note grid, a triad every beat,
    accented melody, a few dynamics."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    beat = rng.uniform(0.45, 0.6)
    degree, t, i = 14, 0.0, 0
    while t < seconds:
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 7, 20))
        p = 48 + 12 * (degree // 7) + scale[degree % 7]
        v = int(rng.integers(70, 95))
        inst.notes.append(pretty_midi.Note(velocity=v, pitch=int(p), start=t, end=t + beat / 2 * 0.9))
        if i % 2 == 0:
            root = 48 + scale[rng.choice([0, 3, 4])]
            for q in (root - 12, root - 5, root):
                inst.notes.append(pretty_midi.Note(velocity=v - 20, pitch=int(q), start=t, end=t + beat * 0.95))
        t += beat / 2
        i += 1
    pm.instruments.append(inst)
    return pm


def random_notes(rng: np.random.Generator, seconds: float = 20.0) -> pretty_midi.PrettyMIDI:
    """'Machine-like': single notes of any pitch, off-grid timing, one velocity."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    t = 0.0
    while t < seconds:
        d = float(rng.uniform(0.05, 0.7))
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=int(rng.integers(30, 96)), start=t, end=t + d * 1.5))
        t += d
    pm.instruments.append(inst)
    return pm


def test_realism_is_chance_for_one_distribution_and_perfect_for_two(bench):
    rng = np.random.default_rng(0)

    def feats(make, n):
        return np.vstack([bench.texture_features(bench.parse_notes(make(rng))) for _ in range(n)])

    a, b, c = feats(musical, 30), feats(musical, 30), feats(random_notes, 30)
    assert np.isfinite(a).all() and a.shape == (30, len(bench.TEXTURE_NAMES))
    same = bench.realism(a, b, seed=0)["balanced_accuracy"]
    different = bench.realism(c, a, seed=0)["balanced_accuracy"]
    assert 0.3 <= same <= 0.7, same
    assert different >= 0.95, different


def brute_longest(piece, corpus) -> int:
    best = 0
    for c in corpus:
        for i in range(len(piece)):
            for j in range(len(c)):
                k = 0
                while i + k < len(piece) and j + k < len(c) and piece[i + k] == c[j + k]:
                    k += 1
                best = max(best, k)
    return best


def test_run_index_finds_planted_copies_exactly(bench):
    rng = np.random.default_rng(1)
    corpus = [rng.integers(40, 80, 120) for _ in range(12)] + [rng.integers(40, 80, 400)]
    pieces = [rng.integers(40, 80, 60) for _ in range(3)]
    pieces.append(np.r_[rng.integers(40, 80, 10), corpus[3][30:53], rng.integers(40, 80, 10)])  # 23 copied
    pieces.append(np.r_[corpus[0][-9:], corpus[1][:9]])  # spans two clips: only 9 count
    pieces.append(np.array([200, 201]))  # shares nothing
    pieces.append(np.r_[[100] * 5, corpus[12][17:317], [101] * 5])  # 300 copied (gallop + bisect)
    pieces.append(np.zeros(0, np.int64))  # empty piece
    runs = bench.RunIndex(corpus).longest_runs(pieces)
    assert list(runs[:6]) == [brute_longest(p, corpus) for p in pieces[:6]]
    assert runs[3] >= 23 and runs[4] == 9 and runs[5] == 0
    assert runs[6] == 300 and runs[7] == 0


def test_listening_folder_is_blind_and_complete(bench, tmp_path):
    rng = np.random.default_rng(2)
    clips = [{"notes": bench.crop(bench.parse_notes(make(rng, 4.0)), 3.0), "kind": kind, "emotion": e,
              "source": f"{kind}-{e}"}
             for e in ("happy", "sad") for kind, make in (("generated", random_notes), ("real", musical))]
    (tmp_path / "clip_99.wav").write_bytes(b"stale")
    key = bench.listening(tmp_path, clips, seed=0, sample_rate=8000, seconds=3.0)
    wavs = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert wavs == ["clip_01.wav", "clip_02.wav", "clip_03.wav", "clip_04.wav"]
    on_disk = json.loads((tmp_path / "key.json").read_text())
    assert on_disk == key and sorted(key) == wavs
    assert sorted((v["kind"], v["emotion"]) for v in key.values()) == sorted((c["kind"], c["emotion"]) for c in clips)
    lengths = {sf.info(str(tmp_path / w)).frames for w in wavs}
    assert lengths == {4 * 8000}  # 3 s + 1 s for every clip: length gives nothing away


def test_corpus_cache_round_trip_and_bad_files(bench, tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for k in range(3):
        p = tmp_path / f"x_{k}.mid"
        musical(rng, 5.0).write(str(p))
        paths.append(p)
    (tmp_path / "bad.mid").write_bytes(b"not a midi file")
    cache = tmp_path / "cache"
    first = bench.load_corpus([*paths, tmp_path / "bad.mid"], cache, "t")
    second = bench.load_corpus([*paths, tmp_path / "bad.mid"], cache, "t")
    assert len(list(cache.glob("*.npz"))) == 1 and sorted(first) == sorted(second) == sorted(map(str, paths))
    for k in first:
        np.testing.assert_allclose(first[k].rows(), second[k].rows())
    n = first[str(paths[0])]
    assert np.all(np.diff(n.start) >= 0) and bench.crop(n, 2.0).end.max() <= 2.0 + 1e-9
    v = bench.validity(n, 5.0)
    assert v["notes"] == len(n) and v["pitch_min"] >= 21 and "length" not in v["broken"]


def _write_data(root, rng):
    q = {"happy": 1, "angry": 2, "sad": 3, "relax": 4}
    for e in q:
        (root / "midi" / e).mkdir(parents=True)
        (root / "pieces" / e).mkdir(parents=True)
        for song in range(8):
            for clip in range(2):
                pm = musical(rng, 12.0)
                if e in ("sad", "relax"):  # make the emotions learnable: slower and softer
                    for n in pm.instruments[0].notes:
                        n.start, n.end, n.velocity = n.start * 1.6, n.end * 1.6, max(1, n.velocity - 30)
                pm.write(str(root / "midi" / e / f"emopia_Q{q[e]}_song{e}{song}_{clip}.mid"))
        for k in range(6):
            random_notes(rng, 12.0).write(str(root / "pieces" / e / f"{e}_{k}.mid"))
    (root / "pop").mkdir()
    for k in range(2):
        musical(rng, 12.0).write(str(root / "pop" / f"pop909_{k:03d}.mid"))


def test_end_to_end_on_synthetic_data(bench, tmp_path, capsys, monkeypatch):
    _write_data(tmp_path, np.random.default_rng(4))
    for name, value in (("CALIBRATION_DRAWS", 1), ("REALISM_REPEATS", 1), ("FOREST_TREES", 40)):  # keep it fast
        monkeypatch.setattr(bench, name, value)
    out = tmp_path / "out"
    rc = bench.main(["--pieces", str(tmp_path / "pieces"), "--midi-dir", str(tmp_path / "midi"),
                     "--pretrain-dir", str(tmp_path / "pop"), "--seconds", "12", "--cache", str(tmp_path / "cache"),
                     "--out", str(out), "--skip-listen", "--label", "synthetic"])
    assert rc == 0
    printed = capsys.readouterr().out
    for heading in ("1. Realism", "2. Emotion fidelity", "3. Originality", "4. Validity"):
        assert heading in printed
    res = json.loads((out / "bench_music.json").read_text())
    assert res["label"] == "synthetic" and res["counts"] == {e: 6 for e in ("happy", "sad", "angry", "relax")}
    assert set(res["realism"]["per_emotion"]) == {"happy", "sad", "angry", "relax"}
    assert res["summary"]["realism_max"] >= 0.9  # random notes vs musical clips: easy to tell apart
    assert res["summary"]["realism_without_repetition_max"] >= 0.9
    assert 0 <= res["fidelity"]["independent_judge"]["overall"] <= 1
    assert all("notes" in v["broken"] for e in res["validity"]["per_emotion"].values() for v in e)  # ~32 < 60 notes
    assert res["validity"]["pieces_breaking_rules"] == 24


def test_help_works(bench, capsys):
    with pytest.raises(SystemExit) as err:
        bench.main(["--help"])
    assert err.value.code == 0 and "--pieces" in capsys.readouterr().out


def test_generation_passes_top_p_only_when_given(bench, tmp_path, monkeypatch):
    import sys
    import types

    import emolib

    calls = []

    def generate(emotion, seconds=40.0, temperature=1.0, seed=None, strength=1.0, models=None, **extra):
        calls.append(dict(emotion=emotion, seconds=seconds, temperature=temperature, seed=seed, strength=strength,
                          models=models, **extra))
        return musical(np.random.default_rng(seed), seconds)

    fake = types.SimpleNamespace(generate=generate)
    monkeypatch.setitem(sys.modules, "emolib.steer", fake)
    monkeypatch.setattr(emolib, "steer", fake, raising=False)
    got = bench.generate_pieces(["happy"], 2, 5.0, 0.9, 10, 0.0, None, None, tmp_path / "p", repeat=0.0)
    assert [c["seed"] for c in calls] == [10, 11] and all("top_p" not in c for c in calls)
    assert calls[0]["strength"] == 0.0 and calls[0]["temperature"] == 0.9 and calls[0]["models"] is None
    assert calls[0]["repeat"] == 0.0
    assert len(got["happy"]) == 2 and len(list((tmp_path / "p" / "happy").glob("*.mid"))) == 2
    calls.clear()
    bench.generate_pieces(["sad"], 1, 5.0, 1.0, 0, 1.0, "/m", 0.9, None)
    assert calls == [dict(emotion="sad", seconds=5.0, temperature=1.0, seed=0, strength=1.0, models="/m",
                          repeat=bench.DEFAULT_REPEAT, top_p=0.9)]


def test_repetition_names_and_mode_weights(bench):
    assert set(bench.REPETITION_NAMES) <= set(bench.TEXTURE_NAMES)  # the blind test really drops them
    from emolib import steer

    assert bench.mode_weights("1") == dict.fromkeys(("happy", "sad", "angry", "relax"), 1.0)
    assert bench.mode_weights("sad=0.5") == {**steer.MODE_WEIGHT, "sad": 0.5}
    for bad in ("fear=1", "sad=x"):
        with pytest.raises(SystemExit, match="mode-weights"):
            bench.mode_weights(bad)


def test_top_p_one_number_or_per_part(bench):
    assert bench.top_p_arg("0.9") == 0.9
    assert bench.top_p_arg("step=1,duration=1") == {"step": 1.0, "duration": 1.0}
    for bad in ("chord=1", "step=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="part"):
            bench.top_p_arg(bad)
