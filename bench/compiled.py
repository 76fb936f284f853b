"""The engine as the image installs it: a wheel built with `TOKENPOOL_COMPILE=1`.

The benchmarks and a test need the mypyc-compiled engine beside the editable, pure
Python one. Building the wheel the way the Dockerfile does (`pip wheel`, an isolated
build with `setup.py`'s module list) and unpacking it into a directory keeps the
source tree free of compiled modules, which would shadow edits to their sources. A
process started with `python -P` and `PYTHONPATH` set by `env` imports the compiled
package from there.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "rules", "schemas", "stream_app",
           "adapters")
"""What the Dockerfile copies: all a wheel is built from."""


def build(workdir: Path) -> Path:
    """Build the compiled wheel under `workdir` and unpack it; returns the directory
    to put on `PYTHONPATH`. Raises `RuntimeError` with pip's output on failure (no
    compiler, no Python headers)."""
    src, dist, site = workdir / "src", workdir / "dist", workdir / "site"
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        env={**os.environ, "TOKENPOOL_COMPILE": "1"},
        capture_output=True, text=True, timeout=900,
    )
    if built.returncode != 0:
        raise RuntimeError(f"compiled build failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    (wheel,) = dist.glob("tokenpool-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def env(site: Path, *more: Path) -> dict[str, str]:
    """The environment of a `python -P` child that imports the compiled package from
    `site` (and anything else, such as `bench`, from `more`)."""
    path = os.pathsep.join(str(p) for p in (site, *more))
    return {**os.environ, "PYTHONPATH": path}


def is_compiled() -> bool:
    """True when this process runs the compiled engine."""
    import rules.engine
    import rules.pool
    import rules.pool_state

    modules = (rules.pool_state, rules.pool, rules.engine)
    return all(Path(m.__file__ or "").suffix != ".py" for m in modules)
