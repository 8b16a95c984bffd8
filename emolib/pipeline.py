"""Photo -> faces -> emotion -> music emotion -> that emotion's LSTM -> MIDI -> audio, in one call."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError

__all__ = ["FACE_TO_MUSIC", "SAMPLE_PHOTO", "MusicResult", "music_emotion_for", "image_to_music"]

#: Face emotion -> music emotion. Visible and changeable: edit it, or pass ``mapping=`` per call.
#: The music side knows the Turkish Music Emotion classes; neutral faces get calm ("relax") music.
#: The three extra FER classes follow their valence/arousal quadrant.
FACE_TO_MUSIC: dict[str, str] = {
    "angry": "angry",
    "happy": "happy",
    "neutral": "relax",
    "sad": "sad",
    "fear": "angry",      # negative valence, high arousal (EMOPIA Q2)
    "disgust": "angry",   # negative valence, high arousal
    "surprise": "happy",  # high arousal; mostly positive in FER
}

SAMPLE_PHOTO = Path(__file__).resolve().parent / "assets" / "astronaut.jpg"


@dataclass
class MusicResult:
    """Everything one photo produced: faces, probabilities, chosen emotions, MIDI and audio."""

    image: str
    faces: list  # list[emolib.faces.Face], largest first
    probabilities: dict[str, float]
    emotion: str  # the face emotion (highest probability) of the deciding face
    music_emotion: str
    midi: Any  # pretty_midi.PrettyMIDI
    audio: np.ndarray | None
    sample_rate: int
    seed: int | None
    temperature: float
    face_probabilities: list[dict[str, float]] = field(default_factory=list)  # one per face
    overridden: bool = False
    music_probabilities: dict[str, float] = field(default_factory=dict)  # face probabilities on music emotions
    blend: bool = False  # True: the whole probability vector shaped the music, not only the winner
    pixels: np.ndarray | None = None  # the decoded photo (H, W, 3) uint8, for drawing the faces on it
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def face_found(self) -> bool:
        """True when a real face (not the whole-image fallback) decided the emotion."""
        return bool(self.faces and self.faces[0].found)

    @property
    def seconds(self) -> float:
        """Length of the generated music in seconds."""
        return float(self.midi.get_end_time())

    def summary(self, **paths: str) -> dict[str, Any]:
        """The JSON-ready description of this result (what the CLI prints and save() writes)."""
        return {
            "image": self.image,
            "size": list(self.pixels.shape[1::-1]) if self.pixels is not None else None,  # width, height decoded
            "faces": [{"box": list(map(int, f.box)), "face_found": bool(f.found),
                       "probabilities": probs} for f, probs in zip(self.faces, self.face_probabilities)],
            "face_found": self.face_found,
            "emotion": self.emotion,
            "probabilities": self.probabilities,
            "music_emotion": self.music_emotion,
            "music_probabilities": self.music_probabilities,
            "blend": self.blend,
            "overridden": self.overridden,
            **paths,
            "seconds": round(self.seconds, 3),
            "notes": sum(len(i.notes) for i in self.midi.instruments),
            "seed": self.seed,
            "temperature": self.temperature,
        }

    def save(self, out_dir: str | os.PathLike, stem: str | None = None) -> dict[str, Any]:
        """Write ``<stem>.mid``, ``<stem>.wav`` and ``<stem>.json`` into ``out_dir``; return the summary."""
        from emolib import audio, notes
        from emolib.files import write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or Path(self.image).stem or "photo"
        midi_path, wav_path, json_path = (out / f"{stem}{ext}" for ext in (".mid", ".wav", ".json"))
        notes.write_midi(self.midi, midi_path)
        if self.audio is None:
            self.audio = audio.render(self.midi, self.sample_rate)
        audio.write_wav(wav_path, self.audio, self.sample_rate)
        summary = self.summary(midi=str(midi_path), wav=str(wav_path))
        write_json(json_path, summary)
        return summary


def music_emotion_for(face_emotion: str, mapping: dict[str, str] | None = None) -> str:
    """The music emotion for a face emotion through ``mapping`` (default FACE_TO_MUSIC)."""
    table = FACE_TO_MUSIC if mapping is None else mapping
    if face_emotion not in table:
        raise EmolibError(f"no music emotion for face emotion {face_emotion!r}; the table maps {sorted(table)}")
    music = table[face_emotion]
    if music not in MUSIC_EMOTIONS:
        raise EmolibError(f"table maps {face_emotion!r} to {music!r}, which is not one of {list(MUSIC_EMOTIONS)}")
    return music


def image_to_music(photo, *, seconds: float = 40.0, seed: int | None = None, temperature: float = 1.0,
                   emotion: str | None = None, mapping: dict[str, str] | None = None, blend: bool = False,
                   steering: float | None = None, top_p: float | None = None, repeat: float | None = None,
                   face_model=None, render_audio: bool = True,
                   sample_rate: int | None = None, name: str | None = None) -> MusicResult:
    """Recognise the emotion on ``photo`` and compose ``seconds`` of new music in it.

    The largest face decides; every face is reported. Photo -> music never imports TensorFlow.

    Parameters
    ----------
    photo : str, os.PathLike, bytes, PIL.Image.Image or np.ndarray
        The photo: a path, its bytes, a PIL image or an (H, W[, 3]) array.
    seconds : float
        Length of the music to compose.
    seed : int or None
        Seed of the sampling (None: a fresh one each call).
    temperature, top_p : float
        Shape the sampling of each note (higher temperature: more adventurous; top_p None:
        ``sampling.TOP_P``, 0.9 for pitch and 0.95 for the rest).
    emotion : str or None
        Overrides the recognised emotion: a face class such as ``"neutral"`` (mapped through
        ``mapping``) or a music emotion such as ``"relax"``.
    mapping : dict or None
        Face emotion -> music emotion (default :data:`FACE_TO_MUSIC`).
    blend : bool
        Let the whole probability vector shape the music (sections by each likely emotion's LSTM,
        tilted toward the weighted mix) instead of the winner alone; ignored when ``emotion`` is given.
    steering : float or None
        Scales the push toward each emotion: guidance of its LSTM away from the base and a nudge
        toward its measured character (None: ``steer.DEFAULT_STRENGTH``; 0: neither; with
        ``repeat=0`` too, the model's own music).
    repeat : float or None
        Chance that a phrase comes back at its end (None: ``steer.DEFAULT_REPEAT``; 0: never).
    face_model : emolib.face_model.FaceModel or None
        A loaded face model (default: the shipped ONNX model, see :func:`emolib.load_face_model`).
    render_audio : bool
        Also render the MIDI to audio (FluidSynth, or a sine fallback).
    sample_rate : int or None
        Audio sample rate (default ``audio.DEFAULT_SAMPLE_RATE``).
    name : str or None
        How the photo is named in messages and results (default: its path, else ``"photo"``).

    Returns
    -------
    result : MusicResult
        Faces, probabilities, the face and music emotions, the ``pretty_midi.PrettyMIDI``, the audio
        and timings; ``result.save(folder)`` writes the .mid, .wav and .json.

    Raises
    ------
    EmolibError
        Naming the photo, when it is unusable.
    """
    from emolib import audio, steer

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    label = name or (str(photo) if isinstance(photo, (str, os.PathLike)) else "photo")
    image, found, per_face, face_emotion = _recognise(photo, label, face_model, timings)

    table = FACE_TO_MUSIC if mapping is None else mapping
    overridden = emotion is not None
    music = _music_emotion(face_emotion, emotion, table)
    music_probs = steer.to_music_probabilities(per_face[0], table)
    blend = blend and not overridden

    t = time.perf_counter()
    strength = steer.DEFAULT_STRENGTH if steering is None else steering
    midi = _compose(music, music_probs if blend else None, seconds=seconds, temperature=temperature, seed=seed,
                    strength=strength, top_p=top_p, repeat=steer.DEFAULT_REPEAT if repeat is None else repeat)
    timings["music"] = time.perf_counter() - t

    rate = sample_rate or audio.DEFAULT_SAMPLE_RATE
    wav = None
    if render_audio:
        t = time.perf_counter()
        wav = audio.render(midi, rate)
        timings["audio"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return MusicResult(image=label, faces=found, probabilities=per_face[0], emotion=face_emotion,
                       music_emotion=music, midi=midi, audio=wav, sample_rate=rate, seed=seed,
                       temperature=temperature, face_probabilities=per_face, overridden=overridden,
                       music_probabilities={e: round(p, 4) for e, p in music_probs.items()}, blend=blend,
                       pixels=image, timings=timings)


def _recognise(photo, label: str, face_model, timings: dict[str, float]
               ) -> tuple[np.ndarray, list, list[dict[str, float]], str]:
    """(the decoded photo, its faces, each face's class probabilities, the deciding face's emotion)."""
    from emolib import faces
    from emolib.face_model import load_face_model

    t = time.perf_counter()
    image = faces.load_image(photo, name=label)
    found = faces.find_faces(image)
    timings["faces"] = time.perf_counter() - t

    t = time.perf_counter()
    model = face_model if face_model is not None else load_face_model()
    probs = model.predict(np.stack([f.crop for f in found]))
    per_face = [{c: round(float(p), 4) for c, p in zip(model.classes, row)} for row in probs]
    face_emotion = model.classes[int(np.argmax(probs[0]))]
    timings["emotion"] = time.perf_counter() - t
    return image, found, per_face, face_emotion


def _music_emotion(face_emotion: str, emotion: str | None, table: dict[str, str]) -> str:
    """The music emotion: the recognised face's through ``table``, unless ``emotion`` overrides it."""
    if emotion is None:
        return music_emotion_for(face_emotion, table)
    if emotion in MUSIC_EMOTIONS:
        return emotion
    return music_emotion_for(emotion, table)


def _compose(music: str, blend_probabilities: dict[str, float] | None, **sampling: Any) -> Any:
    """The music (a PrettyMIDI): ``music``'s LSTM, or a blend by ``blend_probabilities`` when given."""
    from emolib import steer

    if blend_probabilities is not None:
        return steer.generate_blend(blend_probabilities, **sampling)
    return steer.generate(music, **sampling)
