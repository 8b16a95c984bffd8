"""emolib.transcribe: audio -> MIDI on audio the tests render themselves, bad files, resuming, killing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from emolib import EmolibError, audio, batch, transcribe
from emolib.paths import REPO_ROOT
from tests.conftest import run_cli
from tests.mididata import melody_midi

SR = 22050
#: The known melody: (pitch, start) with 0.4 s between onsets.
MELODY = [(pitch, 0.1 + 0.4 * i) for i, pitch in enumerate([60, 64, 67, 72, 71, 67, 64, 62, 65, 69])]
GOOD = ["happy/tune.wav", "happy/song.mp3", "sad/deeper/melody.flac"]
BAD = {  # relative path -> words its reason must contain
    "angry/corrupt.mp3": "corrupt",
    "angry/truncated.wav": "truncated",
    "angry/empty.mp3": "empty",
    "relax/silent.wav": "silent",
    "relax/music.wma": "unsupported format",
    "relax/clip.m4a": "m4a",
}


def _melody_midi() -> pretty_midi.PrettyMIDI:
    return melody_midi([p for p, _ in MELODY], first=MELODY[0][1], spacing=0.4, length=0.35)


def assert_melody(midi: pretty_midi.PrettyMIDI, from_file: bool = False) -> None:
    """One piano; every melody note found at its onset (50 ms), in order; at most a few extra notes."""
    assert len(midi.instruments) == 1 and midi.instruments[0].program == 0
    notes = midi.instruments[0].notes
    if from_file:  # pretty_midi's reader orders notes by their note-off
        notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    starts = [n.start for n in notes]
    assert starts == sorted(starts), "notes must be sorted by start"
    found = []
    for pitch, start in MELODY:
        at_onset = [n.pitch for n in notes if abs(n.start - start) <= 0.05]
        found.append(pitch if pitch in at_onset else at_onset)
    assert found == [p for p, _ in MELODY]
    on_slot = sum(any(abs(n.start - s) <= 0.05 for _, s in MELODY) for n in notes)
    assert len(notes) - on_slot <= 2, f"spurious notes: {[(n.pitch, round(n.start, 2)) for n in notes]}"


@pytest.fixture(scope="module")
def melody_audio() -> np.ndarray:
    return audio.render(_melody_midi(), sample_rate=SR)


def _make_tree(root: Path, wav: np.ndarray, bad: bool = True) -> None:
    for rel in GOOD:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".wav": "WAV", ".mp3": "MP3", ".flac": "FLAC"}[path.suffix]
        sf.write(path, wav, SR, format=fmt)
    (root / "manifest.csv").write_text("not audio, ignored\n")
    (root / "happy" / ".hidden.mp3").write_bytes(b"AppleDouble junk: ignored")
    if not bad:
        return
    for rel in BAD:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (root / "angry/corrupt.mp3").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    whole = root / "angry/whole.wav"
    sf.write(whole, wav, SR)
    data = whole.read_bytes()
    whole.unlink()
    (root / "angry/truncated.wav").write_bytes(data[: len(data) // 3])
    (root / "angry/empty.mp3").write_bytes(b"")
    sf.write(root / "relax/silent.wav", np.zeros(SR * 2, dtype=np.float32), SR)
    (root / "relax/music.wma").write_bytes(b"0&\xb2u\x8ef\xcf\x11" + bytes(100))
    (root / "relax/clip.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, melody_audio):
    """One parallel (2 workers) conversion of a tree mixing good and bad files; shared by the tests."""
    root = tmp_path_factory.mktemp("tx")
    in_dir, out_dir = root / "in", root / "out"
    _make_tree(in_dir, melody_audio)
    rows: list[dict] = []
    summary = transcribe.transcribe_tree(in_dir, out_dir, workers=2, on_result=rows.append, progress=False)
    return in_dir, out_dir, summary, {str(Path(r["input"]).relative_to(in_dir)): r for r in rows}


def test_wav_mp3_flac_transcribe_to_the_melody_in_order(converted):
    _in_dir, out_dir, _summary, rows = converted
    for rel in GOOD:
        row = rows[rel]
        assert row["status"] == "converted", row
        assert row["output"] == str(out_dir / Path(rel).with_suffix(".mid"))
        assert row["emotion"] == rel.split("/")[0]
        assert 4.0 < row["seconds"] < 6.5
        midi = pretty_midi.PrettyMIDI(row["output"])
        assert row["notes"] == len(midi.instruments[0].notes)
        assert_melody(midi, from_file=True)


def test_transcribe_one_file_in_process_with_thresholds(converted):
    in_dir = converted[0]
    assert_melody(transcribe.transcribe(in_dir / "happy/song.mp3"))
    default = transcribe.transcribe(in_dir / "happy/tune.wav")
    strict = transcribe.transcribe(in_dir / "happy/tune.wav", onset_threshold=0.95, frame_threshold=0.9)
    assert len(strict.instruments[0].notes) < len(default.instruments[0].notes)
    high = transcribe.transcribe(in_dir / "happy/tune.wav", min_freq=pretty_midi.note_number_to_hz(66.5))
    assert sorted({n.pitch for n in high.instruments[0].notes}) == [67, 69, 71, 72]


def test_bad_files_are_reported_with_reasons_and_good_ones_written(converted):
    in_dir, out_dir, summary, rows = converted
    assert set(rows) == set(GOOD) | set(BAD)  # csv and hidden files ignored
    for rel, reason in BAD.items():
        row = rows[rel]
        assert row["status"] == "failed", row
        assert reason in row["error"] and str(in_dir / rel) in row["error"], row
        assert not Path(row["output"]).exists()
    assert (summary["converted"], summary["skipped"], summary["failed"]) == (len(GOOD), 0, len(BAD))
    assert {f["input"] for f in summary["failures"]} == {str(in_dir / rel) for rel in BAD}
    assert summary["workers"] == 2 and summary["audio_seconds"] > 12
    report = json.loads(Path(summary["report"]).read_text())
    assert report["summary"]["failed"] == len(BAD) and len(report["files"]) == len(GOOD) + len(BAD)
    assert report["settings"]["onset_threshold"] == 0.5
    mids = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.mid"))
    assert mids == sorted(str(Path(rel).with_suffix(".mid")) for rel in GOOD)


def test_cli_second_run_skips_everything_then_force_redoes(converted):
    in_dir, out_dir, _, _ = converted
    mtimes = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*.mid")}
    proc = run_cli("transcribe", str(in_dir), str(out_dir), "--workers", "1", "--quiet")
    assert proc.returncode == 1, proc.stderr  # the bad files still fail
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    files, summary = lines[:-1], lines[-1]
    assert summary["summary"] and (summary["converted"], summary["skipped"], summary["failed"]) == (0, 3, 6)
    assert {row["status"] for row in files if row["input"].endswith(("tune.wav", "song.mp3", "melody.flac"))} \
        == {"skipped"}
    assert all(row["notes"] > 5 and 4.0 < row["seconds"] < 6.5 for row in files if row["status"] == "skipped")
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*.mid")} == mtimes
    assert proc.stderr.count("emolib: error:") == len(BAD) and "Coremltools" not in proc.stderr
    assert "transcribe: converted 0, skipped 3 (up to date), failed 6" in proc.stderr
    for key in ("input", "output", "status", "seconds", "notes", "error"):
        assert all(key in row for row in files)

    forced = transcribe.transcribe_tree(in_dir / "happy", out_dir / "happy", workers=1, force=True, progress=False)
    assert (forced["converted"], forced["skipped"]) == (2, 0)
    assert all(p.stat().st_mtime_ns > mtimes[p] for p in (out_dir / "happy").glob("*.mid"))


def test_killed_run_leaves_no_partial_file_and_resumes(tmp_path, melody_audio):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    for k in range(12):
        (in_dir / "happy").mkdir(parents=True, exist_ok=True)
        sf.write(in_dir / "happy" / f"take{k:02d}.wav", melody_audio, SR)
    proc = subprocess.Popen([sys.executable, "-m", "emolib", "transcribe", str(in_dir), str(out_dir), "--workers", "1",
                             "--quiet"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out_dir.rglob("take*.mid")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = sorted(out_dir.rglob("take*.mid"))
    assert 1 <= len(done) < 12, "the run should have been killed midway"
    for path in done:  # every visible output is a complete MIDI
        assert len(pretty_midi.PrettyMIDI(str(path)).instruments[0].notes) > 5
    stale = out_dir / "happy" / ".take11.ab12cd34.mid"  # what a kill during a write would leave
    stale.write_bytes(b"MThd")

    summary = transcribe.transcribe_tree(in_dir, out_dir, workers=1, progress=False)
    assert (summary["skipped"], summary["converted"], summary["failed"]) == (len(done), 12 - len(done), 0)
    assert sorted(p.name for p in (out_dir / "happy").iterdir()) == [f"take{k:02d}.mid" for k in range(12)]


def test_load_audio_names_unreadable_and_missing_files(tmp_path, monkeypatch, melody_audio):
    path = tmp_path / "locked.wav"
    sf.write(path, melody_audio, SR)
    if os.geteuid() != 0:  # root reads anything: simulate the denial below instead
        path.chmod(0)
        with pytest.raises(EmolibError, match="permission denied"):
            audio.load_audio(path)
        path.chmod(0o644)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio, "open", deny, raising=False)
    with pytest.raises(EmolibError, match=r"locked\.wav: permission denied"):
        audio.load_audio(path)
    monkeypatch.undo()
    with pytest.raises(EmolibError, match=r"nothere\.mp3: file not found"):
        audio.load_audio(tmp_path / "nothere.mp3")
    assert audio.load_audio(path).shape == melody_audio.shape


def test_truncated_mp3_is_detected(tmp_path, melody_audio):
    whole = tmp_path / "whole.mp3"
    sf.write(whole, np.tile(melody_audio, 2), SR, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert audio.load_audio(whole).size > 8 * SR
    with pytest.raises(EmolibError, match=r"cut\.mp3: truncated audio"):
        audio.load_audio(cut)


def test_silence_gives_an_empty_piano_and_settings_are_validated():
    midi = transcribe.transcribe_audio(np.zeros(SR, dtype=np.float32), SR)
    assert [(i.program, len(i.notes)) for i in midi.instruments] == [(0, 0)]
    with pytest.raises(EmolibError, match="onset_threshold"):
        transcribe.Settings(onset_threshold=1.5)
    with pytest.raises(EmolibError, match="min_freq"):
        transcribe.Settings(min_freq=800, max_freq=200)


def test_name_clash_and_missing_input_folder(tmp_path, melody_audio):
    (tmp_path / "in" / "sad").mkdir(parents=True)
    sf.write(tmp_path / "in" / "sad" / "a.wav", melody_audio[: SR // 2], SR)
    sf.write(tmp_path / "in" / "sad" / "a.mp3", melody_audio[: SR // 2], SR, format="MP3")
    rows = []
    summary = transcribe.transcribe_tree(tmp_path / "in", tmp_path / "out", workers=1, on_result=rows.append,
                                         progress=False, report=tmp_path / "r.json")
    assert (summary["converted"], summary["failed"]) == (1, 1)
    assert "a.wav: same output name as a.mp3" in summary["failures"][0]["error"]
    assert (tmp_path / "r.json").is_file() and not (tmp_path / "out" / transcribe.REPORT_NAME).exists()
    with pytest.raises(EmolibError, match="input folder not found"):
        transcribe.transcribe_tree(tmp_path / "nope", tmp_path / "out")


def test_cli_and_settings_defaults_are_basic_pitchs_own():
    """The CLI flags and Settings default to what basic-pitch's own ``predict`` uses (read from basic-pitch)."""
    import inspect

    from emolib.cli import build_parser

    with transcribe._quiet_import():
        import basic_pitch.inference
    theirs = {name: p.default for name, p in inspect.signature(basic_pitch.inference.predict).parameters.items()}
    expected = (theirs["onset_threshold"], theirs["frame_threshold"], theirs["minimum_note_length"],
                theirs["minimum_frequency"], theirs["maximum_frequency"])
    args = build_parser().parse_args(["transcribe", "IN", "OUT"])
    assert (args.onset_threshold, args.frame_threshold, args.min_note_ms, args.min_freq, args.max_freq) == expected
    ours = transcribe.Settings()
    assert (ours.onset_threshold, ours.frame_threshold, ours.min_note_ms, ours.min_freq, ours.max_freq) == expected
    assert (ours.melodia_trick, ours.midi_tempo) == (theirs["melodia_trick"], theirs["midi_tempo"])


@pytest.fixture
def no_ffmpeg(tmp_path, monkeypatch):
    """PATH without ffmpeg (only a folder holding nothing), audioread's backend cache rebuilt both ways."""
    import audioread

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    audioread.available_backends(flush_cache=True)
    yield
    monkeypatch.undo()
    audioread.available_backends(flush_cache=True)


def test_m4a_without_ffmpeg_names_ffmpeg(tmp_path, no_ffmpeg):
    clip = tmp_path / "clip.m4a"
    clip.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    assert shutil.which("ffmpeg") is None
    with pytest.raises(EmolibError, match=r"clip\.m4a: cannot decode m4a audio \(no decoder .*install ffmpeg"):
        audio.load_audio(clip)


def test_audioread_decodes_what_soundfile_cannot(tmp_path, melody_audio):
    """The audioread path itself (its standard-library WAV reader: no ffmpeg needed) gives the same samples."""
    path = tmp_path / "tune.wav"
    sf.write(path, np.stack([melody_audio, melody_audio], axis=1), SR, subtype="PCM_16")
    data, rate = audio._decode_with_audioread(path)
    assert rate == SR and data.shape == (melody_audio.size, 2) and data.dtype == np.float32
    np.testing.assert_allclose(data[:, 0], melody_audio, atol=1e-4)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed here")
def test_m4a_decodes_through_ffmpeg(tmp_path, melody_audio):
    wav, m4a = tmp_path / "tune.wav", tmp_path / "tune.m4a"
    sf.write(wav, melody_audio, SR)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    decoded = audio.load_audio(m4a, SR)
    assert abs(decoded.size - melody_audio.size) < 0.1 * SR


def test_cli_warns_on_a_folder_without_audio(tmp_path):
    (tmp_path / "in" / "happy").mkdir(parents=True)
    (tmp_path / "in" / "happy" / "notes.txt").write_text("no audio here")
    proc = run_cli("transcribe", str(tmp_path / "in"), str(tmp_path / "out"))
    assert proc.returncode == 0
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert (summary["files"], summary["converted"], summary["failed"]) == (0, 0, 0)
    assert "no audio files under" in proc.stderr
    proc = run_cli("transcribe", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert proc.returncode == 1 and "missing: input folder not found" in proc.stderr


def test_a_dead_worker_fails_only_its_own_file(tmp_path):
    names = ["a.wav", "b_crash_once.wav", "c.wav", "d_crash_always.wav", "e.wav", "f.wav"]
    jobs = [(str(tmp_path / n), str(tmp_path / (n + ".mid"))) for n in names]
    rows: list[dict] = []
    from tests.crashing_worker import work

    def finish(job, row, error):
        rows.append(row if row is not None else {"input": job[0], "status": "failed", "error": error})

    batch.run_pool(jobs, 2, work, finish)
    status = {Path(r["input"]).name: r["status"] for r in rows}
    assert len(rows) == len(names) and status.pop("d_crash_always.wav") == "failed"
    assert set(status.values()) == {"converted"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] == batch.WORKER_DIED
