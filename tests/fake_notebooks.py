"""Build small notebooks in the project's committed shape (badge, Colab install cell, parameters cell).

Used by the generic notebook checks (to prove they catch what they should) and by the retrain
tests (fast stand-ins for 01/02/03 with the agreed parameter names that write tiny candidates).
"""
from __future__ import annotations

from pathlib import Path

INSTALL_CELL = '''import os, sys, subprocess
if "google.colab" in sys.modules:  # Colab lacks these; elsewhere `make install` provided them
    clone = os.path.isfile("../pyproject.toml") and os.path.isfile("../emolib/__init__.py")  # run inside a checkout?
    emolib = ["-e", "..[train]"] if clone else ["emolib[train] @ git+https://github.com/emolib/emolib"]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *emolib], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "basic-pitch==0.4.0"], check=True)
    subprocess.run("apt-get -qq install -y fluidsynth > /dev/null", shell=True, check=True)'''
#: Notebook 04's app needs Colab's custom widget manager (its camera/upload widget is an anywidget).
APP_INSTALL_CELL = INSTALL_CELL + '''
    from google.colab import output
    output.enable_custom_widget_manager()  # the app's camera/upload widget is an anywidget'''


def install_cell_for(name: str) -> str:
    """The exact install cell a committed notebook must have (04 also enables custom widgets)."""
    return APP_INSTALL_CELL if name == "04_image_to_music.ipynb" else INSTALL_CELL


def set_install_cell(path: str | Path) -> None:
    """Rewrite cell 1 of a committed notebook to its install cell (nothing else changes)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[1].cell_type == "code" and "pip" in nb.cells[1].source, f"{path}: cell 1 is not the install cell"
    nb.cells[1].source = install_cell_for(Path(path).name)
    nbformat.write(nb, str(path))


def badge(filename: str) -> str:
    """The Open-in-Colab badge markdown for ``notebooks/<filename>``."""
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/emolib/emolib/blob/main/notebooks/{filename})")


def make_notebook(path: Path, parameters: str, *body: str, title: str = "A test notebook"):
    """Write a notebook at ``path`` shaped like the committed ones; returns the nbformat object.

    Cells: 0 title + badge, 1 install, 2 parameters, then per ``body`` source a `## Step k`
    markdown section followed by its code cell (so body code cells are 4, 6, 8, ...).
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    path = Path(path)
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cells = [new_markdown_cell(f"# {title}\n\n{badge(path.name)}\n\nWhat and why."), new_code_cell(INSTALL_CELL)]
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    cells.append(params)
    for k, src in enumerate(body, 1):
        cells += [new_markdown_cell(f"## Step {k}\n\nWhat this step does and why."), new_code_cell(src)]
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return nb


# Stand-ins for the real notebooks: same agreed parameter names, plus test knobs (SOURCE_MODEL,
# the metric to report, SLEEP, FAIL, STARTED_FLAG).
FACE_PARAMS = '''DATA_DIR = None
CLASSES = ["angry", "happy", "neutral", "sad"]
EPOCHS = 1
BATCH_SIZE = 8
LIMIT_PER_CLASS = None
SEED = 0
OUT_MODEL = "face.keras"
SOURCE_MODEL = ""
VAL_MACRO_F1 = 0.5
SLEEP = 0
FAIL = False
STARTED_FLAG = ""'''

FACE_BODY = '''import json, os, pathlib, shutil, time
if STARTED_FLAG:
    pathlib.Path(STARTED_FLAG).write_text("started")
time.sleep(SLEEP)
if FAIL:
    raise RuntimeError("deliberate failure in the face notebook")
out = pathlib.Path(OUT_MODEL)
out.parent.mkdir(parents=True, exist_ok=True)
shutil.copyfile(SOURCE_MODEL, out)
os.chmod(out, 0o600)  # as files.atomic_path leaves it (mkstemp)
n = sum(1 for _ in pathlib.Path(DATA_DIR).rglob("*.jpg"))
(out.parent / "metrics.json").write_text(json.dumps(
    {"val": {"macro_f1": VAL_MACRO_F1}, "classes": CLASSES, "n_images": n, "epochs": EPOCHS, "seed": SEED}))'''

MELODY_PARAMS = '''MIDI_DIR = None
EMOTIONS = ["happy", "sad"]
SEQ_LENGTH = 25
EPOCHS = 1
MAX_FILES = None
SEED = 0
OUT_DIR = "melody_models"
SOURCE_BUNDLE = ""
VAL_NLL = {"happy": 1.0, "sad": 1.0}
SLEEP = 0
FAIL = False'''

MELODY_BODY = '''import json, pathlib, shutil, time
time.sleep(SLEEP)
if FAIL:
    raise ValueError("deliberate failure in the melody notebook")
for emotion in EMOTIONS:
    n = len(list((pathlib.Path(MIDI_DIR) / emotion).glob("*.mid")))
    assert n > 0, f"no MIDI for {emotion} in {MIDI_DIR}"
    out = pathlib.Path(OUT_DIR) / emotion
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE_BUNDLE, out / "generator.npz")
    (out / "model_card.txt").write_text(emotion)
    (out / "sample.mid").write_bytes(b"MThd")  # a generated piece: not part of the model
    (out / "metrics.json").write_text(json.dumps(
        {"val": {"nll": VAL_NLL[emotion]}, "data": {"midi_dir": str(pathlib.Path(MIDI_DIR).resolve())},
         "config": {"seed": SEED, "seq_length": SEQ_LENGTH}, "n_files": n, "emotion": emotion}))'''

TRANSCRIBE_PARAMS = '''MP3_DIR = None
MIDI_OUT_DIR = "midi"
WORKERS = 1
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 58
FORCE = False'''

TRANSCRIBE_BODY = '''import pathlib
for mp3 in sorted(pathlib.Path(MP3_DIR).rglob("*.mp3")):
    out = pathlib.Path(MIDI_OUT_DIR) / mp3.parent.name / (mp3.stem + ".mid")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"MThd")'''
