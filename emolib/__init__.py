"""emolib: a photo of a face in, the emotion on it recognised, new music in that emotion out.

Pipeline (one module per stage, data flows one way):

    photo -> faces -> emotion -> (neutral->relax) -> melody -> notes -> MIDI -> audio

Entry points: :func:`image_to_music`, :func:`load_face_model`, :func:`load_generator`,
:func:`transcribe_file` / :func:`transcribe_tree` and :class:`MusicApp`, importable from
``emolib`` directly. They load on first use, and heavy dependencies (TensorFlow, basic-pitch)
inside the functions that need them, so ``import emolib`` and ``emolib --help`` stay fast.
"""
import importlib
import os
from typing import Any

# TensorFlow's C++ start-up chatter drowns the messages meant for users; callers may override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from emolib.errors import EmolibError

__version__ = "0.1.0"

#: The seven FER2013 classes, and the four the default face model uses.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FACE_CLASSES = ("angry", "happy", "neutral", "sad")
#: Keras dtype policies the face CNN can train in (it is always saved in float32).
TRAIN_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: The four music emotions (Turkish Music Emotion dataset classes).
MUSIC_EMOTIONS = ("happy", "sad", "angry", "relax")

#: The entry points, re-exported lazily (PEP 562): ``emolib.image_to_music`` imports
#: ``emolib.pipeline`` on first use, so ``import emolib`` loads no numpy/cv2/ONNX/TensorFlow stack.
_LAZY = {
    "image_to_music": "emolib.pipeline",
    "load_face_model": "emolib.face_model",
    "load_generator": "emolib.melody",
    "transcribe_file": "emolib.transcribe",
    "transcribe_tree": "emolib.transcribe",
    "MusicApp": "emolib.widgets",
}

__all__ = ["EmolibError", "FER_CLASSES", "FACE_CLASSES", "TRAIN_PRECISIONS", "MUSIC_EMOTIONS", "__version__",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'emolib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
