"""Papermill runs of the retraining notebooks: parameter checks, execution, failures that name the cell."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from emolib.errors import EmolibError

__all__ = ["NotebookFailed", "notebook_parameters", "check_parameters", "kernel_imports_this_emolib",
           "run_notebook"]


class NotebookFailed(EmolibError):
    """A notebook raised: names the notebook and the cell (as numbered in the executed copy)."""


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The notebook's `parameters` cell as papermill infers it: name -> {default, inferred_type_name, help}.

    Raises EmolibError when the notebook is missing or has no cell tagged `parameters`.
    """
    import nbformat
    from papermill.inspection import inspect_notebook

    notebook = Path(notebook)
    if not notebook.is_file():
        raise EmolibError("notebook not found", notebook)
    nb = nbformat.read(notebook, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise EmolibError("no cell tagged `parameters`", notebook)
    return inspect_notebook(str(notebook))


def check_parameters(notebook: str | os.PathLike, names: Any) -> None:
    """Raise EmolibError naming the notebook when it lacks any of ``names`` (papermill only warns)."""
    have = notebook_parameters(notebook)
    missing = [n for n in names if n not in have]
    if missing:
        raise EmolibError(f"the parameters cell has no {missing} (it has {sorted(have)}): "
                          "the notebook and the config/tests drifted apart", notebook)


@contextlib.contextmanager
def kernel_imports_this_emolib() -> Iterator[None]:
    """Make kernels import the same emolib as this process (a checkout's, not an older install's)."""
    old = os.environ.get("PYTHONPATH")
    src = Path(__file__).resolve().parents[2]
    if not (src / "pyproject.toml").is_file():  # an installed package: the kernel finds it already
        yield
        return
    os.environ["PYTHONPATH"] = str(src) if not old else os.pathsep.join([str(src), old])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def run_notebook(notebook: Path, out: Path, parameters: Mapping[str, Any], kernel: str = "python3",
                 cell_timeout: int | None = None) -> float:
    """Execute ``notebook`` into ``out`` with papermill (cwd = the notebook's folder); returns seconds.

    A failing cell raises NotebookFailed naming the notebook, the cell number in the executed copy
    and the error; the executed copy (with the traceback) is kept at ``out``.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t0 = time.monotonic()
    try:
        with kernel_imports_this_emolib():
            pm.execute_notebook(str(notebook), str(out), parameters=dict(parameters), cwd=str(notebook.parent),
                                kernel_name=kernel, progress_bar=False, log_output=False,
                                execution_timeout=cell_timeout)
    except PapermillExecutionError as err:
        first = next((ln.strip() for ln in (err.source or "").splitlines() if ln.strip()), "")
        raise NotebookFailed(f"cell {err.cell_index} (In [{err.exec_count}]: {first[:80]!r}) raised "
                             f"{err.ename}: {str(err.evalue)[:300]}; executed copy: {out}", notebook) from None
    except Exception as err:  # a cell timeout, a dead kernel (out of memory), a missing kernelspec
        where = _running_cell(out)
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        raise NotebookFailed(f"{where}{type(err).__name__}: {detail}; executed copy: {out}", notebook) from None
    return time.monotonic() - t0


def _running_cell(executed: Path) -> str:
    """'cell N (In [k]) ' for the last cell papermill started in the executed copy, else ''."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:
        return ""
    started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return ""
    cell = nb.cells[started[-1]]
    return f"cell {started[-1]} (In [{cell.get('execution_count')}]) "
