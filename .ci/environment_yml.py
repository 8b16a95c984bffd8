"""Generate environment.yml (conda) from constraints.txt, the single source of pinned versions.

Usage: python .ci/environment_yml.py > environment.yml
tests/test_packaging.py asserts the committed file equals this output.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Installed by `pip install --no-deps` after the rest (see constraints.txt), so not in the env's pip list.
NO_DEPS = {"basic-pitch"}
# Direct dependencies taken from pyproject.toml (+ the cpu and dev extras); transitive pins stay in the lock.
REQ_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_dependencies() -> list[str]:
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + meta["optional-dependencies"]["cpu"] + meta["optional-dependencies"]["dev"]
    return [_norm(REQ_NAME.match(r).group(1)) for r in reqs]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[_norm(name)] = version
    return out


def render() -> str:
    locked = pins()
    lines = [
        "# GENERATED from constraints.txt by .ci/environment_yml.py; do not edit by hand.",
        "# conda env create -f environment.yml && conda activate emolib",
        f"# then: pip install --no-deps basic-pitch=={locked['basic-pitch']} && pip install --no-deps -e .",
        "# (basic-pitch must be installed without its declared deps; see constraints.txt)",
        "name: emolib",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - fluidsynth",
        "  - pip:",
    ]
    for name in sorted(set(direct_dependencies()) - NO_DEPS):
        lines.append(f"      - {name}=={locked[name]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
