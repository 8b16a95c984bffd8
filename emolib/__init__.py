"""emolib: a photo of a face in, the emotion on it recognised, new music in that emotion out.

Pipeline (one module per stage, data flows one way):

    photo -> faces -> emotion -> (neutral->relax) -> melody -> notes -> MIDI -> audio

Heavy dependencies (TensorFlow, basic-pitch) are imported inside the functions that need
them, so ``import emolib`` and ``emolib --help`` stay fast.
"""
import os

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

__all__ = ["EmolibError", "FER_CLASSES", "FACE_CLASSES", "TRAIN_PRECISIONS", "MUSIC_EMOTIONS", "__version__"]
