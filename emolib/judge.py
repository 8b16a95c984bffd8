"""A MIDI emotion classifier: does a piece of music carry the emotion it was made for?

Generated music is only worth its label if a listener (or a stand-in for one) hears that
emotion in it. Following EMOPIA (Hung et al., ISMIR 2021), which judges emotion-conditioned
generators with a classifier trained on real labelled music, this module classifies a MIDI by
the interpretable, tempo-free musical features of ``emolib.music_features`` (note density,
register, major/minor tendency, dynamics, articulation, polyphony, rhythm) with a classical model
trained on ``music/midi/<emotion>/`` split by song (``notes.split_songs``, as the melody LSTMs).

The fitted model ships as plain JSON (feature scaler + coefficients, or tree arrays): no pickle,
readable, a few kilobytes.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.files import write_json
from emolib.music_features import FEATURE_NAMES, Clip, feature_matrix, features, list_clips
from emolib.notes import split_songs
from emolib.paths import MODELS_DIR, data_root
from emolib.runs import command_line

if TYPE_CHECKING:  # pragma: no cover
    import pretty_midi

__all__ = ["DEFAULT_MODEL", "CANDIDATES", "Judge", "load_judge", "fit", "confusion", "per_class_accuracy",
           "split_clips", "train"]

#: Where the shipped classifier lives.
DEFAULT_MODEL = MODELS_DIR / "judge" / "judge.json"


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

    def predict_proba(self, midi: str | os.PathLike | pretty_midi.PrettyMIDI) -> dict[str, float]:
        """Probability of each emotion for one piece (a path or a PrettyMIDI)."""
        probs = self.predict_proba_features(features(midi)[None])[0]
        return {c: float(p) for c, p in zip(self.classes, probs)}

    def predict(self, midi: str | os.PathLike | pretty_midi.PrettyMIDI) -> str:
        """The most likely emotion of one piece."""
        probs = self.predict_proba(midi)
        return max(probs, key=lambda e: probs[e])

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


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Confusion counts: rows true class, columns predicted class."""
    m = np.zeros((n, n), dtype=int)
    for t, p in zip(y_true, y_pred):
        m[int(t), int(p)] += 1
    return m


def per_class_accuracy(cm: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class (share of its items predicted as itself) from a confusion matrix."""
    return {c: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan") for i, c in enumerate(classes)}


def split_clips(clips: Sequence[Clip], test_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train/test indices with every song's clips on one side: ``notes.split_songs`` (seeded), about
    ``test_fraction`` of the songs held out."""
    split = split_songs([str(c.path) for c in clips], seed=seed, fractions={"test": test_fraction})
    test_files = set(split["test"])
    test = [i for i, c in enumerate(clips) if str(c.path) in test_files]
    train = [i for i, c in enumerate(clips) if str(c.path) not in test_files]
    return train, test


def _choose_candidate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, emotions: Sequence[str],
                      candidates: Sequence[dict[str, Any]], folds: int, seed: int,
                      progress: bool) -> tuple[int, list[dict[str, Any]]]:
    """Index of the candidate with the best song-grouped cross-validated accuracy, and every candidate's scores."""
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    cv_scores = []
    for cand in candidates:
        accs = []
        for a, b in cv.split(X, y, groups):
            model = fit(X[a], y[a], emotions, cand, seed)
            accs.append(float(np.mean(model.predict_proba_features(X[b]).argmax(1) == y[b])))
        cv_scores.append({**cand, "cv_accuracy": float(np.mean(accs)), "cv_std": float(np.std(accs))})
        if progress:
            print(f"judge: {cand} cv accuracy {np.mean(accs):.3f}", file=sys.stderr, flush=True)
    return max(range(len(candidates)), key=lambda i: cv_scores[i]["cv_accuracy"]), cv_scores


def train(midi_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None, *,
          emotions: Sequence[str] = MUSIC_EMOTIONS, seed: int = 0, test_fraction: float = 0.2, folds: int = 5,
          candidates: Sequence[dict[str, Any]] = CANDIDATES, cache_dir: str | os.PathLike | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train the emotion classifier on ``midi_dir/<emotion>/*.mid`` and write ``judge.json`` + ``metrics.json``.

    Songs (not clips) are split into train and held-out test. The model is chosen among
    ``candidates`` by song-grouped cross-validation on the training songs only, refitted on
    all training songs, then scored once on the held-out songs. Returns the metrics.
    """
    out = Path(out_dir) if out_dir is not None else DEFAULT_MODEL.parent
    clips = list_clips(midi_dir, emotions)
    X_all, ok, errors = feature_matrix([c.path for c in clips], cache_dir=cache_dir, progress=progress)
    clips = [clips[i] for i in ok]
    y_all = np.array([list(emotions).index(c.emotion) for c in clips])
    train_idx, test_idx = split_clips(clips, test_fraction, seed)
    Xtr, ytr = X_all[train_idx], y_all[train_idx]
    groups = np.array([clips[i].song for i in train_idx])

    best, cv_scores = _choose_candidate(Xtr, ytr, groups, emotions, candidates, folds, seed, progress)
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
        "split": f"by song (notes.split_songs), {test_fraction:.0%} of the songs held out, seed {seed}",
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
