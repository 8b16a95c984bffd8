"""Photo -> music end to end, with the shipped face and melody models."""
import json

import numpy as np
import pretty_midi
import pytest
from PIL import Image

from emolib import MUSIC_EMOTIONS, EmolibError, audio, pipeline
from tests.conftest import run_cli

SAMPLE = pipeline.SAMPLE_PHOTO


@pytest.fixture(scope="module")
def sample_result():
    return pipeline.image_to_music(SAMPLE, seconds=20, seed=3)


def test_sample_photo_gives_a_face_probabilities_and_music(sample_result):
    r = sample_result
    assert r.face_found and len(r.faces) >= 1
    x, _y, w, _h = r.faces[0].box
    assert 100 < x + w / 2 < 400 and w > 80  # the astronaut's face, not the whole 512x512 frame
    assert set(r.probabilities) == {"angry", "happy", "neutral", "sad"}
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert r.emotion == max(r.probabilities, key=r.probabilities.get)
    assert r.music_emotion == pipeline.FACE_TO_MUSIC[r.emotion]
    assert abs(r.seconds - 20) <= 2.0
    assert r.audio is not None and r.audio.size >= 19 * r.sample_rate
    assert np.sqrt(np.mean(r.audio ** 2)) > 0.01  # audible, not silent


def test_save_writes_midi_wav_and_json(sample_result, tmp_path):
    summary = sample_result.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astronaut.json", "astronaut.mid", "astronaut.wav"]
    assert json.loads((tmp_path / "astronaut.json").read_text()) == summary
    midi = pretty_midi.PrettyMIDI(summary["midi"])
    assert abs(midi.get_end_time() - 20) <= 2.0
    assert summary["faces"][0]["box"] == list(sample_result.faces[0].box)
    for key in ("image", "faces", "face_found", "emotion", "probabilities", "music_emotion", "midi", "wav", "seconds"):
        assert key in summary


def test_same_seed_same_music_different_seed_different_music():
    a = pipeline.image_to_music(SAMPLE, seconds=10, seed=7, render_audio=False)
    b = pipeline.image_to_music(SAMPLE, seconds=10, seed=7, render_audio=False)
    c = pipeline.image_to_music(SAMPLE, seconds=10, seed=8, render_audio=False)
    pitches = lambda r: [n.pitch for i in r.midi.instruments for n in i.notes]  # noqa: E731
    assert pitches(a) == pitches(b)
    assert pitches(a) != pitches(c)


@pytest.mark.parametrize("override, music",
                         [("sad", "sad"), ("neutral", "relax"), ("relax", "relax"), ("angry", "angry")])
def test_emotion_override(override, music):
    r = pipeline.image_to_music(SAMPLE, seconds=8, seed=1, emotion=override, render_audio=False)
    assert r.music_emotion == music and r.overridden
    assert r.emotion in r.probabilities  # the recognised emotion is still reported


def test_mapping_table_is_changeable():
    everything_happy = {c: "happy" for c in pipeline.FACE_TO_MUSIC}
    r = pipeline.image_to_music(SAMPLE, seconds=8, seed=1, mapping=everything_happy, render_audio=False)
    assert r.music_emotion == "happy"
    with pytest.raises(EmolibError, match="not one of"):
        pipeline.music_emotion_for("sad", {"sad": "gloomy"})
    with pytest.raises(EmolibError, match="no music emotion"):
        pipeline.image_to_music(SAMPLE, seconds=8, emotion="bored", render_audio=False)


def test_several_faces_largest_decides_all_reported():
    face = Image.open(SAMPLE).convert("RGB")
    canvas = Image.new("RGB", (930, 520), "white")
    canvas.paste(face, (0, 0))
    canvas.paste(face.resize((410, 410)), (520, 100))
    r = pipeline.image_to_music(np.asarray(canvas), seconds=8, seed=1, render_audio=False)
    assert len(r.faces) >= 2 and all(f.found for f in r.faces[:2])
    areas = [f.box[2] * f.box[3] for f in r.faces]
    assert areas == sorted(areas, reverse=True)
    assert r.faces[0].box[0] < 450  # the big face on the left decides
    assert len(r.face_probabilities) == len(r.faces)
    assert len(r.summary()["faces"]) == len(r.faces)


def test_no_face_falls_back_to_whole_image_and_says_so():
    rng = np.random.default_rng(0)
    noise = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    r = pipeline.image_to_music(noise, seconds=8, seed=1, render_audio=False)
    assert not r.face_found and r.summary()["face_found"] is False


def test_without_fluidsynth_the_run_still_makes_audio(monkeypatch):
    monkeypatch.setattr(audio, "fluidsynth_available", lambda: False)
    monkeypatch.setattr(audio, "_warned", False)
    with pytest.warns(RuntimeWarning, match="apt-get install"):
        r = pipeline.image_to_music(SAMPLE, seconds=8, seed=1, sample_rate=16000)
    assert np.sqrt(np.mean(r.audio ** 2)) > 0.01


def _bad_photos(tmp_path):
    (tmp_path / "notes.txt").write_text("this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = SAMPLE.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("L", (8000, 7000)).save(tmp_path / "huge.png")  # 56 megapixels
    return ["notes.txt", "empty.jpg", "truncated.jpg", "huge.png"]


def test_cli_bad_photos_fail_alone_and_clearly(tmp_path):
    bad = _bad_photos(tmp_path)
    photos = [str(tmp_path / b) for b in bad] + [str(SAMPLE)]
    res = run_cli("image2music", *photos, "--out", str(tmp_path / "out"), "--seconds", "8", "--seed", "2")
    assert res.returncode == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line["image"] for line in lines] == photos
    for line, name in zip(lines[:-1], bad):
        assert name in line["error"]
    good = lines[-1]
    assert "error" not in good and good["music_emotion"] in MUSIC_EMOTIONS
    assert (tmp_path / "out" / "astronaut.mid").exists() and (tmp_path / "out" / "astronaut.wav").exists()
    errors = [line for line in res.stderr.splitlines() if line.startswith("emolib: error:")]
    assert len(errors) == len(bad)
    assert "Traceback" not in res.stderr


def test_cli_photos_with_the_same_name_do_not_overwrite_each_other(tmp_path):
    other = tmp_path / "elsewhere" / SAMPLE.name
    other.parent.mkdir()
    other.write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "out"
    res = run_cli("image2music", str(SAMPLE), str(other), "--out", str(out), "--seconds", "4", "--seed", "1")
    assert res.returncode == 0, res.stderr
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert (first["midi"], second["midi"]) == (str(out / "astronaut.mid"), str(out / "astronaut-2.mid"))
    for name in ("astronaut", "astronaut-2"):
        for ext in (".mid", ".wav", ".json"):
            assert (out / f"{name}{ext}").stat().st_size > 0
    assert json.loads((out / "astronaut-2.json").read_text())["image"] == str(other)


def test_blend_lets_the_whole_probability_vector_shape_the_music():
    r = pipeline.image_to_music(SAMPLE, seconds=12, seed=2, blend=True, render_audio=False)
    assert r.blend and sum(r.music_probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert r.music_probabilities["relax"] == pytest.approx(r.probabilities["neutral"], abs=1e-3)
    assert abs(r.seconds - 12) <= 1.5
    argmax = pipeline.image_to_music(SAMPLE, seconds=12, seed=2, render_audio=False)
    assert not argmax.blend
    overridden = pipeline.image_to_music(SAMPLE, seconds=8, seed=2, blend=True, emotion="sad", render_audio=False)
    assert not overridden.blend and overridden.music_emotion == "sad"  # an explicit choice wins over the blend
