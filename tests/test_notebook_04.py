
import pretty_midi

from tests.notebooks import execute_notebook


def test_notebook_04_runs_headless(tmp_path):
    out = tmp_path / "music"
    nb = execute_notebook("04_image_to_music.ipynb", {"OUT_DIR": str(out), "SECONDS": 10.0, "SEED": 5,
                                                      "SHOW_APP": False}, tmp_path)
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".mid", ".wav"]
    midi = pretty_midi.PrettyMIDI(str(next(out.glob("*.mid"))))
    assert 9 <= midi.get_end_time() <= 11
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # faces, probabilities, piano roll
