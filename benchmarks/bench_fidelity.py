"""Does the generated music carry its emotion? Judge it like EMOPIA (ISMIR 2021) does.

Prints, in order:
1. the emotion classifier's (emolib.judge) accuracy on held-out real clips (songs it never saw);
2. fidelity: N pieces per emotion from the shipped generators, plain ("before") and steered
   ("after", emolib.steer), the share judged as the intended emotion, and confusion matrices;
3. musical statistics of real vs generated pieces per emotion (table + a box-plot PNG);
4. originality: per piece, the longest run of pitches shared with ANY training clip, and the
   distinct pitches per piece (goal: >= 70% fidelity, >= 8 distinct pitches, no copied run > 16);
5. the mixed-emotion blend: what the judge hears for a few probability vectors.

    python benchmarks/bench_fidelity.py                  # 50 pieces per emotion, ~5 min on 2 cores
    python benchmarks/bench_fidelity.py --count 10       # quick look

Features of the real clips are cached in a temp folder (--cache), never in the repo; the PNG and
a JSON of every figure go to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import MUSIC_EMOTIONS, judge, steer  # noqa: E402
from emolib.paths import data_root  # noqa: E402

STATS = [  # (label, feature name, transform)
    ("notes/s", "note_density", None),
    ("onsets/s", "onset_density", None),
    ("pitch mean", "pitch_mean", None),
    ("pitch range", "pitch_range", None),
    ("major share", "mode_major", "major"),
    ("velocity", "velocity_mean", None),
    ("duration s", "duration_log_mean", "exp"),
    ("distinct pitches", "distinct_pitches", None),
]


def stat_values(X: np.ndarray, feature: str, transform: str | None) -> np.ndarray:
    v = X[:, judge.FEATURE_NAMES.index(feature)]
    if transform == "major":
        return (v > 0).astype(float)
    if transform == "exp":
        return np.exp(v)
    return v


# --------------------------------------------------------------------------- originality
class RunIndex:
    """Longest run of consecutive pitches shared with any clip of a corpus, by rolling hashes.

    For each run length L, the L-grams of every clip are hashed (a position-independent
    polynomial hash mod 2**64, vectorised with numpy) and looked up; L grows until no piece
    shares a run that long, so the cost is (longest shared run) x (corpus size).
    """

    B = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, sequences: list[np.ndarray]):
        self.seq, self.end = self._concat(sequences)
        self.P, self.pw = self._prefix(self.seq)
        self._cache: dict[int, np.ndarray] = {}

    @staticmethod
    def _concat(sequences):
        seq = np.concatenate([np.asarray(s, np.uint64) + np.uint64(1) for s in sequences])
        ends = np.cumsum([len(s) for s in sequences])
        end = np.repeat(ends, [len(s) for s in sequences])
        return seq, end

    @classmethod
    def _prefix(cls, seq):
        binv = np.uint64(pow(int(cls.B), -1, 2 ** 64))
        n = len(seq)
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.concatenate([[np.uint64(1)], np.full(n, cls.B, np.uint64)]), dtype=np.uint64)
            pinv = np.cumprod(np.concatenate([[np.uint64(1)], np.full(n - 1, binv, np.uint64)]), dtype=np.uint64)
            P = np.concatenate([[np.uint64(0)], np.cumsum(seq * pinv, dtype=np.uint64)])
        return P, pw

    @staticmethod
    def _hashes(P, pw, end, L):
        n = len(P) - 1
        i = np.arange(0, n - L + 1)
        i = i[end[i] >= i + L]
        with np.errstate(over="ignore"):
            return (P[i + L] - P[i]) * pw[i]

    def corpus_hashes(self, L: int) -> np.ndarray:
        if L not in self._cache:
            self._cache[L] = np.unique(self._hashes(self.P, self.pw, self.end, L))
        return self._cache[L]

    def longest_runs(self, pieces: list[np.ndarray]) -> np.ndarray:
        """Per piece, the length of its longest pitch run found in some corpus clip."""
        prepared = []
        for s in pieces:
            seq, end = self._concat([s])
            P, pw = self._prefix(seq)
            prepared.append((P, pw, end))
        best = np.zeros(len(pieces), dtype=int)
        alive = list(range(len(pieces)))
        L = 1
        while alive:
            corpus = self.corpus_hashes(L)
            still = []
            for k in alive:
                P, pw, end = prepared[k]
                h = self._hashes(P, pw, end, L)
                at = np.minimum(np.searchsorted(corpus, h), len(corpus) - 1)
                if len(h) and (corpus[at] == h).any():
                    best[k] = L
                    still.append(k)
            alive = still
            self._cache.pop(L - 1, None)
            L += 1
        return best


def pitch_sequence(source) -> np.ndarray:
    """Pitches in onset order (chords low to high), as notes.midi_to_notes orders them."""
    return judge.note_arrays(source)["pitch"].astype(np.int64)


def corpus_sequences(clips, cache: Path) -> list[np.ndarray]:
    key = cache / f"pitchseqs_{len(clips)}_{abs(hash(tuple(str(c.path) for c in clips))) % 10**12}.npz"
    if key.is_file():
        with np.load(key) as z:
            return [z[f"s{i}"] for i in range(len(z.files))]
    seqs = []
    for c in clips:
        try:
            seqs.append(pitch_sequence(c.path))
        except Exception:
            seqs.append(np.zeros(0, np.int64))
    np.savez(key, **{f"s{i}": s for i, s in enumerate(seqs)})
    return seqs


# --------------------------------------------------------------------------- printing
def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(h) for h in header]] + [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def confusion_text(cm: np.ndarray, classes) -> str:
    rows = [[f"{c} (n={cm[i].sum()})"] + [int(x) for x in cm[i]] for i, c in enumerate(classes)]
    return table(rows, ["true \\ judged"] + list(classes))


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--midi", default=None, help="labelled MIDI folder <emotion>/*.mid (default: DATA/music/midi)")
    ap.add_argument("--models", default=None, help="folder of <emotion>/ generators (default: the shipped ones)")
    ap.add_argument("--judge", default=None, help="judge.json (default: the shipped one)")
    ap.add_argument("--count", type=int, default=50, help="pieces per emotion and variant")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--strength", type=float, default=1.0, help="steering strength of the 'steered' variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["plain", "steered"], choices=["plain", "steered"])
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "emolib_judge_cache"))
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "emolib_fidelity"))
    ap.add_argument("--no-originality", action="store_true")
    ap.add_argument("--no-blend", action="store_true")
    ap.add_argument("--ablation", action="store_true",
                    help="also add the steering mechanisms one at a time (before/after of each change)")
    ap.add_argument("--repetition", type=float, default=None, help="override the steered variant's repetition penalty")
    args = ap.parse_args(argv)

    from emolib import melody

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    midi_dir = Path(args.midi) if args.midi else data_root() / "music" / "midi"
    model = judge.load_judge(args.judge)
    classes = list(model.classes)
    judge_dir = Path(model.path).parent
    jm = json.loads((judge_dir / "metrics.json").read_text())
    results: dict = {"parameters": vars(args)}

    # 1 ------------------------------------------------------------------ the judge on real clips
    clips = judge.list_clips(midi_dir, classes)
    X_real, ok, errors = judge.feature_matrix([c.path for c in clips], cache_dir=cache)
    clips = [clips[i] for i in ok]
    y_real = np.array([classes.index(c.emotion) for c in clips])
    test = np.array([c.song in set(jm["test_songs"]) for c in clips])
    pred = model.predict_proba_features(X_real[test]).argmax(1)
    cm = judge.confusion(y_real[test], pred, len(classes))
    acc = judge.per_class_accuracy(cm, classes)
    print(f"\n== 1. Emotion classifier ({jm['model']['kind']}) on held-out REAL clips "
          f"({int(test.sum())} clips of {len(jm['test_songs'])} unseen songs; chance 25%)")
    print(table([[c, f"{acc[c]:.1%}"] for c in classes] + [["all", f"{np.mean(pred == y_real[test]):.1%}"]],
                ["emotion", "accuracy"]))
    print(confusion_text(cm, classes))
    results["judge_real"] = {"accuracy": float(np.mean(pred == y_real[test])), "per_emotion": acc, "confusion": cm.tolist()}

    # 2 ------------------------------------------------------------------ fidelity
    gen_feats: dict[str, dict[str, np.ndarray]] = {}
    gen_seqs: dict[str, dict[str, list[np.ndarray]]] = {}
    fidelity: dict[str, dict] = {}
    for variant in args.variants:
        gen_feats[variant], gen_seqs[variant] = {}, {}
        cm = np.zeros((len(classes), len(classes)), dtype=int)
        t1 = time.time()
        for e in classes:
            gen = melody.load_generator(e, path=None if args.models is None else Path(args.models) / e)
            if variant == "steered":
                steering = steer.steering_for(e, args.strength)
                if args.repetition is not None:
                    steering = replace(steering, repetition=args.repetition)
                gen = steer.steered(gen, steering)
            rows, seqs = [], []
            for k in range(args.count):
                pm = gen.generate(seconds=args.seconds, temperature=args.temperature, seed=args.seed + k)
                rows.append(judge.features(pm))
                seqs.append(pitch_sequence(pm))
            F = np.vstack(rows)
            gen_feats[variant][e], gen_seqs[variant][e] = F, seqs
            for p in model.predict_proba_features(F).argmax(1):
                cm[classes.index(e), p] += 1
        fidelity[variant] = {"per_emotion": judge.per_class_accuracy(cm, classes),
                             "all": float(np.trace(cm) / cm.sum()), "confusion": cm.tolist(),
                             "seconds": round(time.time() - t1, 1)}
    results["fidelity"] = fidelity
    print(f"\n== 2. Fidelity: share of {args.count} generated pieces per emotion judged as the intended emotion "
          f"({args.seconds:g} s, temperature {args.temperature:g}, seeds {args.seed}..{args.seed + args.count - 1})")
    print(table([[c] + [f"{fidelity[v]['per_emotion'][c]:.0%}" for v in args.variants] + [f"{acc[c]:.0%}"]
                 for c in classes]
                + [["all"] + [f"{fidelity[v]['all']:.0%}" for v in args.variants] + [f"{results['judge_real']['accuracy']:.0%}"]],
                ["emotion"] + [f"{v} (gen)" for v in args.variants] + ["real clips"]))
    for v in args.variants:
        print(f"\nconfusion, {v}:")
        print(confusion_text(np.array(fidelity[v]["confusion"]), classes))

    if args.ablation:
        none = dict(mode_strength=0.0, register_strength=0.0, density=0.0, dynamics=0.0, repetition=0.0, variety=0.0)
        steps = [("plain", none),
                 ("+ dynamics", {**none, "dynamics": 1.0}),
                 ("+ density/chords/articulation", {**none, "dynamics": 1.0, "density": 1.0}),
                 ("+ register", dict(mode_strength=0.0, repetition=0.0, variety=0.0)),
                 ("+ mode/key", dict(repetition=0.0, variety=0.0)),
                 ("+ repetition penalty", dict(variety=0.0)),
                 ("+ per-piece variety (= steered)", {})]
        rows = []
        for name, off in steps:
            hits = {}
            for e in classes:
                gen = melody.load_generator(e, path=None if args.models is None else Path(args.models) / e)
                gen = steer.steered(gen, replace(steer.steering_for(e, args.strength), **off))
                F = np.vstack([judge.features(gen.generate(seconds=args.seconds, temperature=args.temperature,
                                                           seed=args.seed + k)) for k in range(args.count)])
                hits[e] = float(np.mean(model.predict_proba_features(F).argmax(1) == classes.index(e)))
            rows.append([name] + [f"{hits[e]:.0%}" for e in classes] + [f"{np.mean(list(hits.values())):.0%}"])
            results.setdefault("ablation", {})[name] = hits
        print("\n== 2b. Each steering change, added one at a time (fidelity; same seeds)")
        print(table(rows, ["steering"] + classes + ["all"]))

    # 3 ------------------------------------------------------------------ musical statistics
    print("\n== 3. Musical statistics (medians; major share = share of pieces leaning major)")
    rows, stats_json = [], {}
    for e in classes:
        groups = {"real": X_real[y_real == classes.index(e)], **{v: gen_feats[v][e] for v in args.variants}}
        for name, F in groups.items():
            vals = [float(np.mean(stat_values(F, f, t)) if t == "major" else np.median(stat_values(F, f, t)))
                    for _, f, t in STATS]
            rows.append([e, name] + [round(x, 2) for x in vals])
            stats_json[f"{e}/{name}"] = dict(zip([s[0] for s in STATS], vals))
    print(table(rows, ["emotion", "source"] + [s[0] for s in STATS]))
    results["stats"] = stats_json
    plot_path = out / "fidelity_stats.png"
    plot_stats(X_real, y_real, gen_feats, classes, plot_path)
    print(f"plot: {plot_path}")

    # 4 ------------------------------------------------------------------ originality
    distinct = {v: {e: gen_feats[v][e][:, judge.FEATURE_NAMES.index("distinct_pitches")] for e in classes}
                for v in args.variants}
    if not args.no_originality:
        t1 = time.time()
        index = RunIndex([s for s in corpus_sequences(clips, cache) if len(s)])
        print(f"\n== 4. Originality: longest pitch run shared with any of {len(clips)} training clips, per piece; "
              "distinct pitches per piece (goal: run <= 16, distinct >= 8)")
        rows, orig_json = [], {}
        keys = [(v, e) for v in args.variants for e in classes]
        flat = index.longest_runs([s for key in keys for s in gen_seqs[key[0]][key[1]]])
        all_runs = dict(zip(keys, np.split(flat, np.cumsum([len(gen_seqs[v][e]) for v, e in keys])[:-1])))
        for v in args.variants:
            for e in classes:
                runs = all_runs[(v, e)]
                d = distinct[v][e]
                rows.append([v, e, int(runs.min()), float(np.median(runs)), float(np.percentile(runs, 90)),
                             int(runs.max()), int(np.sum(runs > 16)), int(d.min()), float(np.median(d))])
                orig_json[f"{v}/{e}"] = {"runs": runs.tolist(), "distinct_pitches": d.tolist()}
        print(table(rows, ["variant", "emotion", "run min", "median", "p90", "max", "> 16", "distinct min",
                           "distinct median"]))
        print(f"(originality search {time.time() - t1:.0f} s)")
        results["originality"] = orig_json

    # 5 ------------------------------------------------------------------ mixed emotions
    if args.no_blend:
        (out / "fidelity.json").write_text(json.dumps(results, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
        print(f"\nall figures: {out / 'fidelity.json'}   (total {time.time() - t0:.0f} s)")
        return 0
    print("\n== 5. Mixed emotions (steer.generate_blend): judge's mean probabilities over "
          f"{min(args.count, 10)} pieces per vector")
    rows = []
    for probs in ({"happy": 1.0}, {"sad": 1.0}, {"happy": 0.5, "relax": 0.5}, {"sad": 0.6, "relax": 0.3, "angry": 0.1},
                  {"angry": 0.5, "happy": 0.5}, {"sad": 0.5, "angry": 0.5}):
        P = np.vstack([model.predict_proba_features(judge.features(
            steer.generate_blend(probs, args.seconds, args.temperature, seed=args.seed + k, strength=args.strength,
                                 models=args.models))[None])[0] for k in range(min(args.count, 10))])
        rows.append([" ".join(f"{e}:{p:g}" for e, p in probs.items())] + [f"{x:.2f}" for x in P.mean(0)])
    print(table(rows, ["face vector"] + [f"judged {c}" for c in classes]))

    (out / "fidelity.json").write_text(json.dumps(results, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
    print(f"\nall figures: {out / 'fidelity.json'}   (total {time.time() - t0:.0f} s)")
    return 0


def plot_stats(X_real, y_real, gen_feats, classes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in STATS if s[2] != "major"]
    sources = ["real"] + list(gen_feats)
    colors = ["#888888", "#e07b39", "#3b7dd8"]
    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(4 * ((len(shown) + 1) // 2), 7))
    for ax, (label, feat, tr) in zip(axes.flat, shown):
        data, pos, cols = [], [], []
        for i, e in enumerate(classes):
            groups = [X_real[y_real == i]] + [gen_feats[v][e] for v in gen_feats]
            for j, F in enumerate(groups):
                data.append(stat_values(F, feat, tr))
                pos.append(i * (len(sources) + 1) + j)
                cols.append(colors[j % len(colors)])
        bp = ax.boxplot(data, positions=pos, widths=0.8, patch_artist=True, showfliers=False)
        for patch, c in zip(bp["boxes"], cols):
            patch.set_facecolor(c)
        ax.set_xticks([i * (len(sources) + 1) + (len(sources) - 1) / 2 for i in range(len(classes))], classes)
        ax.set_title(label)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[j % len(colors)]) for j in range(len(sources))]
    fig.legend(handles, sources, loc="lower right")
    fig.suptitle("Real vs generated pieces per emotion")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
