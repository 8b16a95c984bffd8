"""Generic checks over every committed notebook (notebooks/*.ipynb), and parameter drift.

Each notebook must open cleanly in Jupyter and Colab (valid nbformat 4, kernelspec python3, the
Colab badge, the Colab-only install cell), be committed without outputs or execution counts, have
exactly one `parameters` cell holding the agreed names, and call emolib functions only with
arguments they accept. The retrain config may only name parameters the notebooks have.
Each check is first proven to fail on a notebook built with that defect.
(Executing each notebook with smoke parameters is its owner's test; see tests/notebooks.py.)
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

import pytest

from emolib.paths import MODELS_DIR, REPO_ROOT
from tests.fake_notebooks import INSTALL_CELL, badge, install_cell_for, make_notebook

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))

#: The parameter names every notebook must keep (the retrain job and the other notebooks use them).
AGREED_PARAMETERS = {
    "01_emotion_cnn.ipynb": ["DATA_DIR", "CLASSES", "EPOCHS", "BATCH_SIZE", "LIMIT_PER_CLASS", "SEED", "OUT_MODEL"],
    "02_mp3_to_midi.ipynb": ["MP3_DIR", "MIDI_OUT_DIR", "WORKERS", "ONSET_THRESHOLD", "FRAME_THRESHOLD",
                             "MIN_NOTE_MS", "FORCE"],
    "03_train_rnn_per_emotion.ipynb": ["MIDI_DIR", "EMOTIONS", "SEQ_LENGTH", "EPOCHS", "MAX_FILES", "SEED", "OUT_DIR"],
    "04_image_to_music.ipynb": ["PHOTO", "OUT_DIR", "SECONDS", "SEED", "TEMPERATURE", "EMOTION"],
}


# --------------------------------------------------------------------------- the checks
def structure_problems(path: Path) -> list[str]:
    """Everything that keeps ``path`` from opening cleanly or from being committed as is."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    except Exception as err:
        return [f"not a readable notebook: {err}"]
    problems = []
    if nb.get("nbformat") != 4:
        problems.append(f"nbformat {nb.get('nbformat')}, expected 4")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid nbformat: {str(err).splitlines()[0]}")
    spec = nb.metadata.get("kernelspec", {})
    if spec.get("name") != "python3" or spec.get("display_name") != "Python 3":
        problems.append(f"kernelspec {spec or 'missing'}, expected name python3 / display_name 'Python 3'")
    cells = nb.get("cells", [])
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has outputs (clear them before committing)")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has execution_count {cell['execution_count']}")
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells tagged `parameters` ({tagged}), expected exactly one")
    elif cells[tagged[0]].get("cell_type") != "code":
        problems.append(f"the `parameters` cell {tagged[0]} is not a code cell")
    elif tagged[0] != 2:
        problems.append(f"the `parameters` cell is cell {tagged[0]}, expected cell 2 (after the install cell)")
    if not cells or cells[0].get("cell_type") != "markdown" or badge(path.name) not in cells[0].get("source", ""):
        problems.append(f"cell 0 is not markdown with the Open-in-Colab badge for {path.name}")
    if (len(cells) < 2 or cells[1].get("cell_type") != "code"
            or cells[1].get("source", "").strip() != install_cell_for(path.name)):
        problems.append("cell 1 is not the Colab-only install cell from the brief (exactly)")
    sections = [c for c in cells[3:] if c.get("cell_type") == "markdown" and re.match(r"\s*##", c.get("source", ""))]
    if len(sections) < 2:
        problems.append(f"{len(sections)} `## ` narrative sections after the parameters, expected at least 2 "
                        "(students read these notebooks: say what happens and why)")
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            try:
                ast.parse(_python_only(cell.get("source", "")))
            except SyntaxError as err:
                problems.append(f"cell {i} is not valid Python: {err.msg} (line {err.lineno})")
    return problems


def parameter_problems(path: Path) -> list[str]:
    """The `parameters` cell must be plain assignments papermill can read, holding the agreed names."""
    from emolib.errors import EmolibError
    from emolib.retrain import notebook_parameters

    try:
        params = notebook_parameters(path)
    except EmolibError as err:
        return [str(err)]
    problems = []
    missing = [n for n in AGREED_PARAMETERS.get(path.name, []) if n not in params]
    if missing:
        problems.append(f"the parameters cell lacks the agreed {missing}")
    for name, p in params.items():
        default = str(p["default"]).strip("\"'")
        if re.match(r"(/|[A-Za-z]:\\|~)", default) or "MyDrive" in default or "/content/" in default:
            problems.append(f"{name} defaults to the hard-coded path {p['default']}: use None (data_root()) "
                            "or a relative path")
    if not params:
        problems.append("papermill finds no parameters in the `parameters` cell")
    for i, name, value in _hidden_tunables(path):
        why = ("overrides the parameter papermill injected" if name in params
               else "is a tunable outside the `parameters` cell")
        problems.append(f"cell {i}: {name} = {value} {why}")
    return problems


def _hidden_tunables(path: Path) -> list[tuple[int, str, str]]:
    """UPPER_CASE names set to literals after the parameters cell (tunables papermill cannot reach)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not tagged or i <= tagged[0]:
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and _is_literal(node.value):
                    found.append((i, name, ast.unparse(node.value)[:40]))
    return found


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is not None
    if isinstance(node, (ast.List, ast.Tuple)):
        return bool(node.elts) and all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    return False


def _python_only(source: str) -> str:
    """Notebook source with IPython magics and shell escapes blanked out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def emolib_call_problems(path: Path) -> list[str]:
    """Every call the notebook makes to an emolib function/class must fit its signature.

    Resolves names bound by ``import emolib.x as y``, ``from emolib import x`` and
    ``from emolib.x import f`` across the notebook, then binds each call's positional and keyword
    arguments to the real signature. Catches a notebook passing EPOCHS as ``epoch=`` after the code
    renamed it, or calling a function that no longer exists.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    aliases: dict[str, str] = {}
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue  # reported by structure_problems
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "emolib" or a.name.startswith("emolib."):
                        if a.asname:
                            aliases[a.asname] = a.name
                        else:
                            aliases["emolib"] = "emolib"
            elif isinstance(node, ast.ImportFrom) and node.module and (
                    node.module == "emolib" or node.module.startswith("emolib.")) and node.level == 0:
                for a in node.names:
                    if a.name != "*":
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted(node.func, aliases)
            if dotted is None:
                continue
            problem = _check_call(dotted, node)
            if problem:
                problems.append(f"cell {i}: {problem}")
    return problems


def _dotted(func: ast.expr, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in aliases:
        return None
    return ".".join([aliases[func.id], *reversed(parts)])


def _resolve(dotted: str):
    parts = dotted.split(".")
    missing = None
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("emolib") and ".".join(parts[:k]).startswith(err.name):
                missing = err.name
                continue
            raise
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            if missing:
                raise ModuleNotFoundError(f"no module {missing}", name=missing) from None
            raise
        return obj
    raise ModuleNotFoundError(dotted)


def _check_call(dotted: str, call: ast.Call) -> str | None:
    try:
        target = _resolve(dotted)
    except (ModuleNotFoundError, AttributeError) as err:
        return f"{dotted} does not exist ({type(err).__name__}: {err})"
    if not callable(target):
        return f"{dotted} is not callable"
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None  # builtins without a signature: nothing to check
    starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
    args = [None] * sum(not isinstance(a, ast.Starred) for a in call.args)
    kwargs = {k.arg: None for k in call.keywords if k.arg is not None}
    try:
        (sig.bind_partial if starred else sig.bind)(*args, **kwargs)
    except TypeError as err:
        shown = ", ".join([*(["…"] * len(args)), *(f"{k}=…" for k in kwargs)])
        return f"{dotted}({shown}) does not fit {dotted}{sig}: {err}"
    return None


# --------------------------------------------------------------------------- the checks catch defects
GOOD_PARAMS = 'DATA_DIR = None\nEPOCHS = 2\nSEED = 0\nOUT_DIR = "out"'
GOOD_BODY = ("from emolib import paths\nimport emolib.files as files\nfrom emolib.paths import data_root\n"
             "root = data_root(cwd=None) if DATA_DIR is None else DATA_DIR",
             "files.write_json(OUT_DIR + '/x.json', {'epochs': EPOCHS})\n%matplotlib inline")


def test_a_well_formed_notebook_passes_every_check(tmp_path):
    path = tmp_path / "05_example.ipynb"
    make_notebook(path, GOOD_PARAMS, *GOOD_BODY)
    assert structure_problems(path) == []
    assert parameter_problems(path) == []
    assert emolib_call_problems(path) == []


def _mutate(path: Path, change) -> Path:
    nb = json.loads(path.read_text())
    change(nb)
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("defect, expected", [
    (lambda nb: nb["cells"][4].update(execution_count=3), "cell 4 has execution_count 3"),
    (lambda nb: nb["cells"][4].update(outputs=[{"output_type": "stream", "name": "stdout", "text": "hi\n"}]),
     "cell 4 has outputs"),
    (lambda nb: nb["cells"][2]["metadata"].update(tags=[]), "0 cells tagged `parameters`"),
    (lambda nb: nb["cells"][4]["metadata"].update(tags=["parameters"]), "2 cells tagged `parameters`"),
    (lambda nb: nb["metadata"].update(kernelspec={"name": "ir", "display_name": "R"}), "kernelspec"),
    (lambda nb: nb["cells"][0].update(source="# Title only"), "Open-in-Colab badge"),
    (lambda nb: nb["cells"][1].update(source="!pip install emolib"), "Colab-only install cell"),
    (lambda nb: nb["cells"][4].update(source="def broken(:\n    pass"), "cell 4 is not valid Python"),
    (lambda nb: nb["cells"][4].pop("source"), "invalid nbformat"),
    (lambda nb: nb["cells"][5].update(source="Some words."), "1 `## ` narrative sections"),
])
def test_structure_check_catches(tmp_path, defect, expected):
    path = tmp_path / "05_example.ipynb"
    make_notebook(path, GOOD_PARAMS, *GOOD_BODY)
    problems = structure_problems(_mutate(path, defect))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("default", ['"/content/drive/MyDrive/emolib/fer2013"', '"/home/me/data"', "'~/data'",
                                     '"C:\\\\data"'])
def test_parameter_check_catches_hard_coded_paths(tmp_path, default):
    path = tmp_path / "05_example.ipynb"
    make_notebook(path, f"DATA_DIR = {default}\nSEED = 0", "print(DATA_DIR)")
    (problem,) = parameter_problems(path)
    assert problem.startswith("DATA_DIR defaults to the hard-coded path")


def test_parameter_check_catches_a_tunable_outside_the_parameters_cell(tmp_path):
    path = tmp_path / "05_example.ipynb"
    make_notebook(path, GOOD_PARAMS, "LEARNING_RATE = 1e-3\nEPOCHS = 5\nROOT = DATA_DIR or '.'", "print(LEARNING_RATE)")
    assert parameter_problems(path) == ["cell 4: LEARNING_RATE = 0.001 is a tunable outside the `parameters` cell",
                                        "cell 4: EPOCHS = 5 overrides the parameter papermill injected"]


def test_parameter_check_catches_a_renamed_agreed_parameter(tmp_path):
    path = tmp_path / "03_train_rnn_per_emotion.ipynb"
    make_notebook(path, 'MIDI_DIR = None\nEMOTIONS = ["happy"]\nSEQ_LEN = 25\nEPOCHS = 1\nMAX_FILES = None\n'
                        'SEED = 0\nOUT_DIR = "models"')
    assert parameter_problems(path) == ["the parameters cell lacks the agreed ['SEQ_LENGTH']"]


@pytest.mark.parametrize("call, expected", [
    ("files.write_json(OUT_DIR, {}, indent=EPOCHS)", "unexpected keyword argument 'indent'"),
    ("files.write_json(OUT_DIR)", "missing a required argument: 'obj'"),
    ("files.write_json(OUT_DIR, {}, None, SEED)", "too many positional arguments"),
    ("paths.no_such_function(DATA_DIR)", "emolib.paths.no_such_function does not exist"),
    ("import emolib.no_such_module as nsm\nnsm.train(epochs=EPOCHS)",
     "emolib.no_such_module.train does not exist (ModuleNotFoundError: no module emolib.no_such_module)"),
])
def test_call_check_catches_arguments_the_code_does_not_accept(tmp_path, call, expected):
    path = tmp_path / "05_example.ipynb"
    make_notebook(path, GOOD_PARAMS, *GOOD_BODY, call)
    problems = emolib_call_problems(path)
    assert len(problems) == 1 and problems[0].startswith("cell 8: ") and expected in problems[0], problems


@pytest.mark.parametrize("inside_clone", [True, False])
def test_the_install_cell_installs_the_checkout_it_sits_in(tmp_path, monkeypatch, inside_clone):
    """In Colab the cell pip-installs the surrounding checkout (-e ..) when there is one, else the git URL."""
    import subprocess
    import types

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    if inside_clone:
        (root / "emolib").mkdir()
        (root / "emolib" / "__init__.py").write_text("")
        (root / "pyproject.toml").write_text("[project]\nname = 'emolib'\n")
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(INSTALL_CELL, {})
    first = calls[0]
    assert first[:5] == [sys.executable, "-m", "pip", "install", "-q"]
    assert first[5:] == (["-e", "..[train]"] if inside_clone else ["emolib[train] @ git+https://github.com/emolib/emolib"])
    assert len(calls) == 3


# --------------------------------------------------------------------------- the committed notebooks
def test_every_notebook_is_present_or_reported():
    present = {p.name for p in NOTEBOOKS}
    missing = sorted(set(AGREED_PARAMETERS) - present)
    assert not missing, f"committed notebooks missing: {missing}"
    unexpected = sorted(present - set(AGREED_PARAMETERS))
    assert not unexpected or all(re.match(r"\d\d_\w+\.ipynb$", n) for n in unexpected), unexpected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_clean_and_well_formed(path):
    assert structure_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_has_the_agreed_parameters(path):
    assert parameter_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_calls_emolib_with_arguments_it_accepts(path):
    assert emolib_call_problems(path) == []


# --------------------------------------------------------------------------- retrain config vs notebooks and models
RETRAIN_CONFIGS = [REPO_ROOT / "retrain.yaml", REPO_ROOT / "examples" / "retrain.smoke.yaml"]


@pytest.mark.parametrize("config", RETRAIN_CONFIGS, ids=[p.name for p in RETRAIN_CONFIGS])
def test_retrain_config_names_only_parameters_the_notebooks_have(config):
    from emolib import retrain

    cfg = retrain.load_config(config)
    for name, spec in retrain.STEPS.items():
        notebook = cfg.steps[name]["notebook"]
        assert notebook.is_file(), f"{config.name}: notebooks.{name} names {notebook}, which is not committed"
        retrain.check_parameters(notebook, [*cfg.steps[name]["parameters"], *spec["injected"]])


def test_shipped_models_report_the_metric_their_gate_compares_and_pass_its_load_check():
    from emolib import retrain

    cfg = retrain.load_config(REPO_ROOT / "retrain.yaml")
    from emolib import MUSIC_EMOTIONS

    found = {"face": [MODELS_DIR / "face"], "melody": [MODELS_DIR / "melody" / e for e in MUSIC_EMOTIONS]}
    for kind, folders in found.items():
        rule = cfg.gates[kind]
        for folder in folders:  # the shipped models are committed: every one must be there
            assert (folder / rule["model"]).is_file(), f"shipped model {folder / rule['model']} is missing"
            metrics = retrain.read_metrics(folder / "metrics.json")
            assert metrics is not None, f"{folder}/metrics.json is missing or not JSON"
            value = retrain.metric_value(metrics, rule["metric"])
            assert isinstance(value, (int, float)), (
                f"{folder}/metrics.json has no number at {rule['metric']!r} (gate.{kind}.metric in retrain.yaml): "
                "retraining could never replace this model")
            problem = retrain.verify_loads(folder / rule["model"], list(rule["imports"]), rule["loader"])
            assert problem is None, f"{folder}: the gate's load check (gate.{kind} in retrain.yaml) fails: {problem}"


# --------------------------------------------------------------------------- the shared execution helper
def test_execute_notebook_refuses_drifted_smoke_parameters_and_runs_this_emolib(tmp_path, monkeypatch):
    import tests.notebooks as helper
    from emolib.errors import EmolibError

    monkeypatch.setattr(helper, "NOTEBOOKS", tmp_path)
    make_notebook(tmp_path / "05_example.ipynb", 'OUT = "where.txt"',
                  "import emolib, pathlib\npathlib.Path(OUT).write_text(emolib.__file__)")
    with pytest.raises(EmolibError, match=r"05_example.ipynb: the parameters cell has no \['OUTPUT'\]"):
        helper.execute_notebook("05_example.ipynb", {"OUTPUT": "x"}, tmp_path / "out")
    target = tmp_path / "where.txt"
    nb = helper.execute_notebook("05_example.ipynb", {"OUT": str(target)}, tmp_path / "out")
    assert Path(target.read_text()) == REPO_ROOT / "emolib" / "__init__.py"  # not another installed copy
    assert nb.cells[3].metadata.get("tags") == ["injected-parameters"]
