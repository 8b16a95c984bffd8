"""Run the project's notebooks with papermill in a real Jupyter kernel (shared by the notebook tests)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from emolib.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def execute_notebook(name: str, parameters: dict[str, Any], out_dir: Path, timeout: int = 600):
    """Execute ``notebooks/<name>`` with ``parameters`` injected after its `parameters` cell.

    The kernel runs with the notebooks folder as working directory (as Jupyter would), imports
    this checkout's emolib (whatever copy is installed), and the executed copy is written to
    ``out_dir``; returns it as an nbformat notebook. A failing cell raises papermill's
    PapermillExecutionError, which names the cell. A parameter the notebook's `parameters` cell
    does not have fails first (papermill alone would only warn: smoke parameters must not drift).
    """
    import nbformat
    import papermill as pm

    from emolib.retrain import check_parameters

    check_parameters(NOTEBOOKS / name, parameters)
    out = Path(out_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), saved]))  # the kernel inherits it
    try:
        pm.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, cwd=str(NOTEBOOKS),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    return nbformat.read(out, as_version=4)


def cell_outputs_text(nb) -> str:
    """All stream/text outputs of an executed notebook joined, for assertions."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)
