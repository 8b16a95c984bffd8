"""A MIDI emotion classifier: does a piece of music carry the emotion it was made for?

Generated music is only worth its label if a listener (or a stand-in for one) hears that
emotion in it. Following EMOPIA (Hung et al., ISMIR 2021), which judges emotion-conditioned
generators with a classifier trained on real labelled music, this module turns a MIDI into a
small vector of interpretable, tempo-free musical features (note density, register, major/minor
tendency by Krumhansl key-profile correlation, dynamics, articulation, polyphony, rhythm) and
classifies it with a classical model trained on ``music/midi/<emotion>/`` split by song.

The fitted model ships as plain JSON (feature scaler + coefficients, or tree arrays): no pickle,
readable, a few kilobytes. Generated pieces carry no meaningful tempo map, so every time feature
is in seconds, never in beats.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.files import write_json
from emolib.paths import MODELS_DIR, data_root
from emolib.runs import command_line

if TYPE_CHECKING:  # pragma: no cover
    import pretty_midi

#: Where the shipped classifier lives.
DEFAULT_MODEL = MODELS_DIR / "judge" / "judge.json"
#: Bump when features() changes: cached feature tables are keyed by it.
FEATURE_VERSION = 2

#: Krumhansl-Kessler key profiles (probe-tone ratings), C major and C minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])
#: Interval classes heard as dissonant when sounded together (m2, M2, tritone, m7, M7).
_DISSONANT = {1, 2, 6, 10, 11}
#: Notes starting within this many seconds of each other count as one onset (a chord).
ONSET_TOLERANCE = 0.03

#: Names of the entries of features(), in order.
FEATURE_NAMES: tuple[str, ...] = (
    "note_density",        # notes per second
    "onset_density",       # distinct onsets (chords count once) per second
    "pitch_mean",
    "pitch_std",
    "pitch_low",           # 5th percentile
    "pitch_high",          # 95th percentile
    "pitch_range",         # 95th - 5th percentile
    "distinct_pitches",
    "major_corr",          # best Krumhansl major-key correlation
    "minor_corr",          # best Krumhansl minor-key correlation
    "mode_major",          # major_corr - minor_corr: > 0 leans major
    "key_clarity",         # max(major_corr, minor_corr)
    "off_key",             # share of note time outside the best key's scale
    "pc_entropy",          # pitch-class entropy (bits)
    "velocity_mean",
    "velocity_std",
    "duration_log_mean",   # log seconds
    "duration_log_std",
    "legato",              # mean duration / mean inter-onset interval
    "polyphony",           # mean notes sounding (sum of durations / span)
    "chord_size",          # mean notes per onset
    "ioi_log_mean",        # log seconds between distinct onsets
    "ioi_log_std",
    "melodic_step",        # mean |interval| of the top line, semitones
    "dissonance",          # share of dissonant interval classes within chords
    "low_share",           # share of notes below C3 (48)
    "high_share",          # share of notes above C5 (72)
)


# --------------------------------------------------------------------------- features
def load_midi(source: "str | os.PathLike | pretty_midi.PrettyMIDI") -> "pretty_midi.PrettyMIDI":
    """A PrettyMIDI from a path (or the object itself); EmolibError naming the file if unreadable."""
    import pretty_midi

    if isinstance(source, pretty_midi.PrettyMIDI):
        return source
    path = Path(source)
    if not path.is_file():
        raise EmolibError("MIDI file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # mido/pretty_midi raise many types for corrupt files
        raise EmolibError(f"cannot parse MIDI ({type(err).__name__}: {err})", path) from None


def note_arrays(source: "str | os.PathLike | pretty_midi.PrettyMIDI") -> dict[str, np.ndarray]:
    """All non-drum notes as arrays ``start, end, pitch, velocity`` sorted by onset then pitch."""
    pm = load_midi(source)
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    name = source if not hasattr(source, "instruments") else None
    if not rows:
        raise EmolibError("MIDI holds no (non-drum) notes", name)
    arr = np.array(rows, dtype=np.float64)
    arr = arr[np.lexsort((arr[:, 2], arr[:, 0]))]
    return {"start": arr[:, 0], "end": np.maximum(arr[:, 1], arr[:, 0] + 1e-3), "pitch": arr[:, 2],
            "velocity": arr[:, 3]}


def key_correlations(pc_profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of a 12-bin pitch-class profile with the 12 major and 12 minor keys."""
    prof = np.asarray(pc_profile, dtype=np.float64)
    if prof.std() == 0:
        return np.zeros(12), np.zeros(12)
    maj = np.array([np.corrcoef(prof, np.roll(KK_MAJOR, k))[0, 1] for k in range(12)])
    mnr = np.array([np.corrcoef(prof, np.roll(KK_MINOR, k))[0, 1] for k in range(12)])
    return maj, mnr


def best_key(pc_profile: np.ndarray) -> tuple[int, str, float]:
    """The Krumhansl-Schmuckler key estimate: (tonic pitch class, "major"/"minor", correlation)."""
    maj, mnr = key_correlations(pc_profile)
    if maj.max() >= mnr.max():
        return int(maj.argmax()), "major", float(maj.max())
    return int(mnr.argmax()), "minor", float(mnr.max())


def features(source: "str | os.PathLike | pretty_midi.PrettyMIDI") -> np.ndarray:
    """The musical feature vector of a piece (order: FEATURE_NAMES). Tempo-free: times in seconds."""
    n = note_arrays(source)
    start, end, pitch, vel = n["start"], n["end"], n["pitch"], n["velocity"]
    dur = end - start
    span = max(float(end.max() - start.min()), 1.0)
    count = len(pitch)

    # onsets: notes within ONSET_TOLERANCE of the group's first note form one onset (chord)
    new_group = np.empty(count, dtype=bool)
    new_group[0] = True
    group_start = start[0]
    for i in range(1, count):
        if start[i] - group_start > ONSET_TOLERANCE:
            new_group[i] = True
            group_start = start[i]
        else:
            new_group[i] = False
    group = np.cumsum(new_group) - 1
    onsets = start[new_group]
    n_onsets = len(onsets)
    ioi = np.diff(onsets)
    ioi = ioi[ioi > 0]
    log_ioi = np.log(ioi) if len(ioi) else np.array([np.log(span)])

    pc = np.bincount(pitch.astype(int) % 12, weights=dur, minlength=12)
    maj, mnr = key_correlations(pc)
    tonic, mode, _ = best_key(pc)
    scale = (tonic + (_MAJOR_SCALE if mode == "major" else _MINOR_SCALE)) % 12
    off_key = 1.0 - pc[scale].sum() / max(pc.sum(), 1e-9)
    p = pc / max(pc.sum(), 1e-9)
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())

    # top line: the highest pitch of each onset; chord dissonance from pairwise interval classes
    top = np.full(n_onsets, -np.inf)
    np.maximum.at(top, group, pitch)
    steps = np.abs(np.diff(top))
    sizes = np.bincount(group)
    diss_num = diss_den = 0
    for g in np.flatnonzero(sizes > 1):
        ps = np.unique(pitch[group == g].astype(int))
        if len(ps) < 2:
            continue
        iv = (ps[None, :] - ps[:, None])[np.triu_indices(len(ps), 1)] % 12
        diss_num += sum(int(v) in _DISSONANT for v in iv)
        diss_den += len(iv)

    log_dur = np.log(dur)
    mean_ioi = float(np.mean(ioi)) if len(ioi) else span
    vals = {
        "note_density": count / span,
        "onset_density": n_onsets / span,
        "pitch_mean": pitch.mean(),
        "pitch_std": pitch.std(),
        "pitch_low": np.percentile(pitch, 5),
        "pitch_high": np.percentile(pitch, 95),
        "pitch_range": np.percentile(pitch, 95) - np.percentile(pitch, 5),
        "distinct_pitches": len(np.unique(pitch)),
        "major_corr": maj.max(),
        "minor_corr": mnr.max(),
        "mode_major": maj.max() - mnr.max(),
        "key_clarity": max(maj.max(), mnr.max()),
        "off_key": off_key,
        "pc_entropy": entropy,
        "velocity_mean": vel.mean(),
        "velocity_std": vel.std(),
        "duration_log_mean": log_dur.mean(),
        "duration_log_std": log_dur.std(),
        "legato": float(np.mean(dur)) / max(mean_ioi, 1e-3),
        "polyphony": dur.sum() / span,
        "chord_size": count / n_onsets,
        "ioi_log_mean": log_ioi.mean(),
        "ioi_log_std": log_ioi.std(),
        "melodic_step": steps.mean() if len(steps) else 0.0,
        "dissonance": diss_num / diss_den if diss_den else 0.0,
        "low_share": float(np.mean(pitch < 48)),
        "high_share": float(np.mean(pitch > 72)),
    }
    return np.array([float(vals[k]) for k in FEATURE_NAMES], dtype=np.float64)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Clip:
    """One labelled MIDI file of the training data."""

    path: Path
    emotion: str
    song: str


def song_id(path: str | os.PathLike) -> str:
    """The song a clip belongs to: EMOPIA ``emopia_Q1_<songid>_<n>.mid`` clips share ``<songid>``;
    any other file (VGMIDI pieces, user MIDI) is its own song."""
    stem = Path(path).stem
    m = re.fullmatch(r"emopia_Q\d_(.+)_\d+", stem)
    return f"emopia:{m.group(1)}" if m else f"file:{stem}"


def list_clips(midi_dir: str | os.PathLike | None = None, emotions: Sequence[str] = MUSIC_EMOTIONS) -> list[Clip]:
    """The labelled MIDI files ``midi_dir/<emotion>/*.mid`` (default: the data root's music/midi)."""
    root = Path(midi_dir) if midi_dir is not None else data_root() / "music" / "midi"
    if not root.is_dir():
        raise EmolibError("MIDI folder not found (expected <emotion>/*.mid inside)", root)
    clips = [Clip(p, e, song_id(p)) for e in emotions for p in sorted((root / e).glob("*.mid*"))
             if p.suffix.lower() in (".mid", ".midi")]
    if not clips:
        raise EmolibError(f"no MIDI files in any of {', '.join(e + '/' for e in emotions)}", root)
    return clips


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{FEATURE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def feature_matrix(paths: Iterable[str | os.PathLike], cache_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> tuple[np.ndarray, list[int], list[str]]:
    """Features of many files: (matrix of the readable ones, their indices, one error line per bad file).

    A bad file is reported and skipped, never fatal. With ``cache_dir``, each file's features are
    stored there (keyed by path, size, mtime and FEATURE_VERSION) so reruns skip parsing.
    """
    paths = [Path(p) for p in paths]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    rows, ok, errors = [], [], []
    iterator: Iterable = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, total=len(paths), desc="features", file=sys.stderr)
    for i, path in iterator:
        cached = cache / f"{_cache_key(path)}.npy" if cache is not None and path.is_file() else None
        try:
            if cached is not None and cached.is_file():
                vec = np.load(cached)
            else:
                vec = features(path)
                if cached is not None:
                    np.save(cached, vec)
        except EmolibError as err:
            errors.append(str(err))
            continue
        rows.append(vec)
        ok.append(i)
    matrix = np.vstack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
    return matrix, ok, errors


def split_by_song(clips: Sequence[Clip], test_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train/test indices with every song's clips on one side, about ``test_fraction`` of each
    emotion's songs held out (seeded)."""
    rng = np.random.default_rng(seed)
    test_songs: set[str] = set()
    for emo in sorted({c.emotion for c in clips}):
        songs = sorted({c.song for c in clips if c.emotion == emo})
        rng.shuffle(songs)
        test_songs.update(songs[:max(1, int(round(test_fraction * len(songs))))])
    test = [i for i, c in enumerate(clips) if c.song in test_songs]
    train = [i for i, c in enumerate(clips) if c.song not in test_songs]
    return train, test


# --------------------------------------------------------------------------- model
class Judge:
    """A fitted emotion classifier over FEATURE_NAMES, stored as JSON (no pickle).

    ``kind`` is ``"logistic"`` (standardise, then multinomial logistic regression) or
    ``"trees"`` (a gradient-boosted tree ensemble, one regression tree per class per stage).
    """

    def __init__(self, spec: dict[str, Any], path: str | None = None):
        self.spec = spec
        self.path = path
        self.kind: str = spec["kind"]
        self.classes: tuple[str, ...] = tuple(spec["classes"])
        if tuple(spec["features"]) != FEATURE_NAMES:
            raise EmolibError("classifier was trained on different features; retrain it (emolib judge train)", path)

    # ---------------------------------------------------------------- inference
    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw class scores (n, classes) for a feature matrix."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self.kind == "logistic":
            Z = (X - np.array(self.spec["mean"])) / np.array(self.spec["scale"])
            return Z @ np.array(self.spec["coef"]).T + np.array(self.spec["intercept"])
        if self.kind == "trees":
            scores = np.tile(np.array(self.spec["init"], dtype=np.float64), (len(X), 1))
            lr = float(self.spec["learning_rate"])
            for stage in self.spec["trees"]:
                for k, tree in enumerate(stage):
                    scores[:, k] += lr * _tree_predict(tree, X)
            return scores
        raise EmolibError(f"unknown classifier kind {self.kind!r}", self.path)

    def predict_proba_features(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) for a feature matrix (softmax of the scores)."""
        s = self.decision(X)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, midi: "str | os.PathLike | pretty_midi.PrettyMIDI") -> dict[str, float]:
        """Probability of each emotion for one piece (a path or a PrettyMIDI)."""
        probs = self.predict_proba_features(features(midi)[None])[0]
        return {c: float(p) for c, p in zip(self.classes, probs)}

    def predict(self, midi: "str | os.PathLike | pretty_midi.PrettyMIDI") -> str:
        """The most likely emotion of one piece."""
        probs = self.predict_proba(midi)
        return max(probs, key=probs.get)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the classifier as JSON (atomically)."""
        return write_json(path, self.spec)


def _tree_predict(tree: dict[str, list], X: np.ndarray) -> np.ndarray:
    left, right = np.array(tree["left"]), np.array(tree["right"])
    feat, thr, value = np.array(tree["feature"]), np.array(tree["threshold"]), np.array(tree["value"])
    node = np.zeros(len(X), dtype=int)
    for _ in range(64):
        inner = left[node] >= 0
        if not inner.any():
            break
        idx = np.flatnonzero(inner)
        go_left = X[idx, feat[node[idx]]] <= thr[node[idx]]
        node[idx] = np.where(go_left, left[node[idx]], right[node[idx]])
    return value[node]


def load_judge(path: str | os.PathLike | None = None) -> Judge:
    """The shipped classifier (or one written by train()); EmolibError naming the file if unusable."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if path.is_dir():
        path = path / "judge.json"
    if not path.is_file():
        raise EmolibError("emotion classifier not found (train one: emolib judge train)", path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise EmolibError(f"cannot read classifier JSON ({err})", path) from None
    return Judge(spec, str(path))


def _fit_logistic(X: np.ndarray, y: np.ndarray, classes: Sequence[str], C: float, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    clf = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit((X - mean) / scale, y)
    order = [list(clf.classes_).index(i) for i in range(len(classes))]
    return {"kind": "logistic", "C": C, "mean": mean, "scale": scale,
            "coef": clf.coef_[order], "intercept": clf.intercept_[order]}


def _fit_trees(X: np.ndarray, y: np.ndarray, classes: Sequence[str], n_estimators: int, max_depth: int,
               learning_rate: float, seed: int) -> dict[str, Any]:
    from sklearn.ensemble import GradientBoostingClassifier

    clf = GradientBoostingClassifier(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                                     subsample=0.8, random_state=seed).fit(X, y)
    init = clf._raw_predict_init(X[:1])[0]
    trees = [[{"left": t.tree_.children_left, "right": t.tree_.children_right, "feature": t.tree_.feature,
               "threshold": np.round(t.tree_.threshold, 6), "value": np.round(t.tree_.value[:, 0, 0], 6)}
              for t in stage] for stage in clf.estimators_]
    return {"kind": "trees", "learning_rate": learning_rate, "n_estimators": n_estimators, "max_depth": max_depth,
            "init": init, "trees": trees}


#: Candidate models compared by grouped cross-validation on the training songs.
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"kind": "logistic", "C": 0.1},
    {"kind": "logistic", "C": 1.0},
    {"kind": "logistic", "C": 10.0},
    {"kind": "trees", "n_estimators": 150, "max_depth": 2, "learning_rate": 0.05},
    {"kind": "trees", "n_estimators": 300, "max_depth": 3, "learning_rate": 0.05},
)


def fit(X: np.ndarray, y: np.ndarray, classes: Sequence[str], candidate: dict[str, Any], seed: int = 0) -> Judge:
    """Fit one candidate model on a feature matrix and integer labels (indices into ``classes``)."""
    cand = dict(candidate)
    kind = cand.pop("kind")
    if kind == "logistic":
        spec = _fit_logistic(X, y, classes, seed=seed, **cand)
    elif kind == "trees":
        spec = _fit_trees(X, y, classes, seed=seed, **cand)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    spec = json.loads(json.dumps({**spec, "classes": list(classes), "features": list(FEATURE_NAMES)},
                                 default=lambda v: v.tolist()))
    return Judge(spec)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    """Confusion counts: rows true class, columns predicted class."""
    m = np.zeros((n, n), dtype=int)
    for t, p in zip(y_true, y_pred):
        m[int(t), int(p)] += 1
    return m


def per_class_accuracy(cm: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class (share of its items predicted as itself) from a confusion matrix."""
    return {c: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan") for i, c in enumerate(classes)}


def train(midi_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None, *,
          emotions: Sequence[str] = MUSIC_EMOTIONS, seed: int = 0, test_fraction: float = 0.2, folds: int = 5,
          candidates: Sequence[dict[str, Any]] = CANDIDATES, cache_dir: str | os.PathLike | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train the emotion classifier on ``midi_dir/<emotion>/*.mid`` and write ``judge.json`` + ``metrics.json``.

    Songs (not clips) are split into train and held-out test. The model is chosen among
    ``candidates`` by song-grouped cross-validation on the training songs only, refitted on
    all training songs, then scored once on the held-out songs. Returns the metrics.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    out = Path(out_dir) if out_dir is not None else DEFAULT_MODEL.parent
    clips = list_clips(midi_dir, emotions)
    X_all, ok, errors = feature_matrix([c.path for c in clips], cache_dir=cache_dir, progress=progress)
    clips = [clips[i] for i in ok]
    y_all = np.array([list(emotions).index(c.emotion) for c in clips])
    train_idx, test_idx = split_by_song(clips, test_fraction, seed)
    Xtr, ytr = X_all[train_idx], y_all[train_idx]
    groups = np.array([clips[i].song for i in train_idx])

    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    cv_scores = []
    for cand in candidates:
        accs = []
        for a, b in cv.split(Xtr, ytr, groups):
            model = fit(Xtr[a], ytr[a], emotions, cand, seed)
            accs.append(float(np.mean(model.predict_proba_features(Xtr[b]).argmax(1) == ytr[b])))
        cv_scores.append({**cand, "cv_accuracy": float(np.mean(accs)), "cv_std": float(np.std(accs))})
        if progress:
            print(f"judge: {cand} cv accuracy {np.mean(accs):.3f}", file=sys.stderr, flush=True)
    best = max(range(len(candidates)), key=lambda i: cv_scores[i]["cv_accuracy"])
    model = fit(Xtr, ytr, emotions, candidates[best], seed)

    Xte, yte = X_all[test_idx], y_all[test_idx]
    pred = model.predict_proba_features(Xte).argmax(1)
    cm = confusion(yte, pred, len(emotions))
    by_source = {}
    for src in ("emopia", "vgmidi"):
        sel = [k for k, i in enumerate(test_idx) if clips[i].path.name.startswith(src)]
        if sel:
            by_source[src] = {"clips": len(sel), "accuracy": float(np.mean(pred[sel] == yte[sel]))}
    metrics = {
        "task": "MIDI emotion classification (judge of generated music)",
        "classes": list(emotions),
        "model": candidates[best],
        "test_accuracy": float(np.mean(pred == yte)),
        "test_accuracy_per_emotion": per_class_accuracy(cm, emotions),
        "test_confusion": {"rows_true_cols_pred": list(emotions), "matrix": cm.tolist()},
        "test_accuracy_by_source": by_source,
        "chance": 1.0 / len(emotions),
        "clips": {"train": len(train_idx), "test": len(test_idx), "unreadable": errors},
        "songs": {"train": len({clips[i].song for i in train_idx}), "test": len({clips[i].song for i in test_idx})},
        "test_songs": sorted({clips[i].song for i in test_idx}),
        "model_selection": cv_scores,
        "split": f"by song, {test_fraction:.0%} of each emotion's songs held out, seed {seed}",
        "features": list(FEATURE_NAMES),
        "seed": seed,
        "data": str(Path(midi_dir) if midi_dir is not None else data_root() / "music" / "midi"),
        "command": command_line(),
        "parameters": {"emotions": list(emotions), "seed": seed, "test_fraction": test_fraction, "folds": folds},
    }
    model.spec["metrics"] = {"test_accuracy": metrics["test_accuracy"], "model": candidates[best]}
    model.save(out / "judge.json")
    write_json(out / "metrics.json", metrics)
    return metrics
