"""emolib.notes: MIDI <-> note tables, bad files, folder loading, writing and describing."""
import io
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from emolib import notes
from emolib.errors import EmolibError
from tests.mididata import midi


def _midi(path: Path, tracks, drums=()) -> Path:
    """Write a MIDI with pitched ``tracks`` (lists of (pitch, start, end, velocity)) and drum notes."""
    midi(*tracks, drums=drums, path=path)
    return path


def test_midi_to_notes_merges_instruments_sorts_and_skips_drums(tmp_path):
    path = _midi(tmp_path / "a.mid",
                 [[(60, 0.0, 0.5, 90), (64, 1.0, 1.25, 70)], [(48, 0.5, 1.5, 50), (43, 0.0, 2.0, 40)]],
                 drums=[0.0, 0.25, 0.75])
    t = notes.midi_to_notes(path)
    assert list(t.columns) == list(notes.COLUMNS)
    assert t["pitch"].tolist() == [43, 60, 48, 64]  # by onset, chord notes low to high
    np.testing.assert_allclose(t["start"], [0.0, 0.0, 0.5, 1.0], atol=1e-3)
    np.testing.assert_allclose(t["step"], [0.0, 0.0, 0.5, 0.5], atol=1e-3)
    np.testing.assert_allclose(t["duration"], [2.0, 0.5, 1.0, 0.25], atol=1e-3)
    assert t["velocity"].tolist() == [40, 90, 50, 70]
    assert 36 not in t["pitch"].tolist()


def test_notes_to_midi_round_trip_from_steps(tmp_path):
    table = {"pitch": [60, 62, 64], "step": [0.0, 0.5, 0.25], "duration": [0.4, 0.2, 1.0]}
    pm = notes.notes_to_midi(table, program=40, velocity=[30, 60, 90])
    path = notes.write_midi(pm, tmp_path / "out" / "x.mid")
    back = notes.midi_to_notes(path)
    np.testing.assert_allclose(back["start"], [0.0, 0.5, 0.75], atol=1e-3)
    np.testing.assert_allclose(back["duration"], [0.4, 0.2, 1.0], atol=1e-3)
    assert back["velocity"].tolist() == [30, 60, 90]
    assert pretty_midi.PrettyMIDI(str(path)).instruments[0].program == 40
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left by the atomic write


def test_a_key_struck_again_ends_its_previous_note_so_the_file_reads_back_as_written():
    # C4 held 2 s but struck again at 0.5 s; E4 twice at once, and G4 twice 10 ms apart (one stroke
    # each, as long as the longer); A4 untouched
    table = {"pitch": [60, 64, 64, 60, 67, 67, 69], "start": [0.0, 0.0, 0.0, 0.5, 0.5, 0.51, 0.5],
             "duration": [2.0, 0.3, 0.6, 1.0, 0.2, 0.4, 0.5], "velocity": [80, 70, 90, 60, 50, 40, 30]}
    pm = notes.notes_to_midi(table)
    written = sorted((n.pitch, n.start, n.end, n.velocity) for n in pm.instruments[0].notes)
    assert written == [(60, 0.0, 0.5, 80), (60, 0.5, 1.5, 60), (64, 0.0, 0.6, 90), (67, 0.5, 0.91, 50),
                       (69, 0.5, 1.0, 30)]
    back = notes.midi_to_notes(pretty_midi.PrettyMIDI(io.BytesIO(notes.midi_bytes(pm))))
    assert sorted(zip(back["pitch"], back["start"].round(2), back["end"].round(2))) == [
        (p, s, e) for p, s, e, _ in written]


def test_generated_pieces_read_back_from_their_file_unchanged():
    from emolib import steer

    for emotion in ("sad", "angry"):
        pm = steer.generate(emotion, seconds=40, seed=0)
        ours = sorted((n.pitch, n.start, n.end) for n in pm.instruments[0].notes)
        back = pretty_midi.PrettyMIDI(io.BytesIO(notes.midi_bytes(pm)))
        theirs = sorted((n.pitch, n.start, n.end) for n in back.instruments[0].notes)
        assert len(ours) == len(theirs)
        assert max(abs(a[2] - b[2]) for a, b in zip(ours, theirs)) < 0.01  # ticks, not lost note-offs


def test_describe_counts_notes_length_and_pitches():
    pm = notes.notes_to_midi({"pitch": [60, 60, 67], "start": [0.0, 1.0, 2.0], "duration": [0.5, 0.5, 1.5]},
                             velocity=80)
    assert notes.describe(pm) == {"notes": 3, "seconds": 3.5, "distinct_pitches": 2}
    assert notes.midi_bytes(pm)[:4] == b"MThd"


@pytest.mark.parametrize("kind,message", [("missing", "not found"), ("garbage", "cannot parse MIDI"),
                                          ("drums", "only drum tracks"), ("empty", "no ")])
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, kind, message):
    path = tmp_path / f"{kind}.mid"
    if kind == "garbage":
        path.write_bytes(b"this is not a MIDI file at all")
    elif kind == "drums":
        _midi(path, [], drums=[0.0, 0.5])
    elif kind == "empty":
        _midi(path, [[]])
    with pytest.raises(EmolibError) as info:
        notes.midi_to_notes(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_load_folder_skips_and_reports_bad_files(tmp_path):
    _midi(tmp_path / "good.mid", [[(60, 0.0, 0.5, 80), (62, 0.5, 1.0, 80)]])
    (tmp_path / "broken.mid").write_bytes(b"MThd garbage")
    _midi(tmp_path / "drums.mid", [], drums=[0.0])
    (tmp_path / "readme.txt").write_text("not midi")
    loaded = notes.load_folder(tmp_path)
    assert [Path(p).name for p in loaded.tables] == ["good.mid"]
    assert sorted(Path(p).name for p in loaded.skipped) == ["broken.mid", "drums.mid"]
    assert all(Path(p).name in why for p, why in loaded.skipped.items())
    assert loaded.n_notes == 2
    with pytest.raises(EmolibError, match="MIDI folder not found"):
        notes.load_folder(tmp_path / "nope")


@pytest.mark.data
def test_real_emopia_clip_reads_as_piano_notes(shared):
    path = sorted((shared / "music" / "midi" / "sad").glob("emopia_*.mid"))[0]
    t = notes.midi_to_notes(path)
    assert len(t) > 50
    assert (t["step"] >= 0).all() and (t["duration"] >= 0).all()
    assert t["pitch"].between(21, 108).mean() > 0.99
    assert t["start"].is_monotonic_increasing


# --------------------------------------------------------------------------- tokens and songs
def test_tokens_round_trip_exactly_through_their_decoded_values():
    rng = np.random.default_rng(0)
    tokens = np.stack([rng.integers(0, notes.VOCAB[f], 500) for f in notes.TOKEN_FIELDS], axis=1)
    tokens[0, 0] = 0
    table = notes.detokenize(tokens)
    assert (notes.tokenize(table) == tokens).all()
    assert list(table.columns) == list(notes.COLUMNS)
    np.testing.assert_allclose(table["end"] - table["start"], table["duration"])


def test_tokenize_keeps_chords_pitches_and_times_within_a_bin():
    t = notes.midi_to_notes(_midi(Path(__import__("tempfile").mkdtemp()) / "c.mid", [
        [(60, 0.0, 1.0, 90), (64, 0.005, 1.0, 90), (67, 0.0, 1.0, 90), (72, 1.3, 1.8, 33), (50, 2.0, 9.0, 127)]]))
    tok = notes.tokenize(t)
    assert list(tok[:3, 0]) == [0, 0, 0]  # notes within 12 ms are one chord: step 0
    assert list(tok[:, 1]) == [60, 67, 64, 72, 50] and list(tok[:, 3]) == [11, 11, 11, 4, 15]
    back = notes.detokenize(tok)
    np.testing.assert_allclose(back["start"], [0, 0, 0, 1.3, 2.0], rtol=0.06)  # bins are ~10% wide
    np.testing.assert_allclose(back["duration"], [1.0, 1.0, 1.0, 0.5, 4.0], rtol=0.06)  # 7 s: capped at 4 s
    shifted = notes.tokenize(t, transpose=-5, tempo=1.25)
    assert list(shifted[:, 1]) == [55, 62, 59, 67, 45]
    np.testing.assert_allclose(notes.detokenize(shifted)["start"].iloc[3], 1.3 / 1.25, rtol=0.06)
    assert notes.tokenize(t, transpose=100)[:, 1].max() == 127  # never off the MIDI range


def test_top_first_lists_each_chord_high_to_low_in_its_place():
    t = notes.midi_to_notes(_midi(Path(__import__("tempfile").mkdtemp()) / "c.mid", [
        [(48, 0.0, 2.0, 40), (64, 0.005, 1.0, 90), (67, 0.0, 1.0, 100), (72, 1.3, 1.8, 33),
         (50, 2.0, 3.0, 60), (62, 2.0, 3.0, 70), (65, 2.0, 3.0, 80)]]))
    low, top = notes.tokenize(t), notes.tokenize(t, top_first=True)
    assert list(low[:, 1]) == [48, 67, 64, 72, 50, 62, 65]
    assert list(top[:, 1]) == [67, 64, 48, 72, 65, 62, 50]
    assert (top[:, 0] == low[:, 0]).all()  # each chord keeps its place and its step
    assert list(top[:, 3]) == [12, 11, 5, 4, 10, 8, 7]  # each note keeps its own length and loudness
    cols = ["start", "pitch", "end", "velocity"]
    back, low_back = (notes.detokenize(x).sort_values(cols[:2])[cols].to_numpy() for x in (top, low))
    np.testing.assert_array_equal(back, low_back)  # the same music either way
    assert notes.chords_top_first(np.zeros((0, 4), np.int32)).shape == (0, 4)


def test_songs_split_by_song_seeded_and_complete():
    files = [f"emopia_Q1_song{s}_{c}.mid" for s in range(20) for c in range(3)] + ["vgmidi_Zelda_0.mid",
                                                                                   "vgmidi_Zelda_1.mid"]
    split = notes.split_songs(files, seed=1)
    assert sorted(f for fs in split.values() for f in fs) == sorted(files)
    sides = {part: {notes.song_id(f) for f in fs} for part, fs in split.items()}
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
    assert len(sides["val"]) == 2 and len(sides["test"]) == 3  # 10% and 15% of 21 songs
    assert notes.split_songs(files, seed=1) == split and notes.split_songs(files, seed=2) != split
    assert notes.song_id("x/emopia_Q2_--2B4d4lQhs_1.mid") == "emopia:--2B4d4lQhs"
    assert notes.song_id("vgmidi_Zelda_Theme_0.mid") == notes.song_id("vgmidi_Zelda_Theme_1.mid")
    assert notes.song_id("pop909_001.mid") != notes.song_id("pop909_002.mid")


def _in_key(pitches, durations, shift: int):
    """A note table of ``pitches`` (moved by ``shift``) with ``durations``, one after another."""
    import pandas as pd
    d = np.asarray(durations, float)
    start = np.r_[0.0, np.cumsum(d)[:-1]]
    return pd.DataFrame({"pitch": np.asarray(pitches) + shift, "step": np.diff(start, prepend=0.0), "duration": d,
                         "start": start, "end": start + d, "velocity": np.full(len(d), 80)})


# C major (tonic and fifth held longest) and A harmonic minor (with its G sharp): their key frame is home
C_MAJOR = ([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], [2, 0.5, 1, 0.5, 1.5, 0.5, 0.5, 2, 1, 1, 2])
A_MINOR = ([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57], [2, 0.5, 1, 0.5, 1.5, 0.5, 0.5, 2, 1, 1, 2])


@pytest.mark.parametrize("shift", range(-6, 7))
def test_key_shift_moves_any_key_home_to_c_major_or_a_minor(shift):
    for scale in (C_MAJOR, A_MINOR):
        table = _in_key(*scale, shift)
        expected = -shift if -5 <= -shift <= 6 else 6  # F# major / D# minor: 6 semitones either way; -5..+6
        assert notes.key_shift(table) == expected
        home = notes.in_key_frame(table)
        assert notes.key_shift(home) == 0 and ((home["pitch"] - table["pitch"]) == expected).all()
        assert home[["step", "duration", "start", "end"]].equals(table[["step", "duration", "start", "end"]])


def test_key_shift_of_nothing_tonal_is_no_shift():
    assert notes.key_shift(_in_key([60], [1.0], 0).iloc[:0]) == 0
    assert notes.key_shift(_in_key(range(60, 72), [1.0] * 12, 0)) == 0  # every pitch class alike


def test_a_piece_goes_to_a_random_key_on_the_piano_by_its_seed():
    table = _in_key(*C_MAJOR, 0)
    moved = {s: notes.to_random_key(table, s)["pitch"] - table["pitch"] for s in range(40)}
    assert all((m == m.iloc[0]).all() for m in moved.values())  # one shift for the whole piece
    assert {int(m.iloc[0]) for m in moved.values()} == set(range(-5, 7))
    assert notes.to_random_key(table, 3)["pitch"].equals(notes.to_random_key(table, 3)["pitch"])
    low = _in_key([21, 24, 28], [1, 1, 1], 0)  # at the piano's bottom: only upward
    assert all(notes.to_random_key(low, s)["pitch"].min() >= notes.PIANO_LOW for s in range(40))
    wide = _in_key([notes.PIANO_LOW, 60, notes.PIANO_HIGH], [1, 1, 1], 0)  # room only where it is
    assert all(notes.to_random_key(wide, s)["pitch"].equals(wide["pitch"]) for s in range(10))
    off = _in_key([12, 60, 120], [1, 1, 1], 0)  # no shift keeps it on the piano: unmoved
    assert notes.to_random_key(off, 1)["pitch"].equals(off["pitch"])
