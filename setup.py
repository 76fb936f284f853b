"""Build hook: `TOKENPOOL_COMPILE=1` compiles the engine's per-event modules with mypyc.

The rules engine is strictly typed Python, so mypyc can turn its per-event path into
C without a line of it changing: a quarter less time per event (`bench/results.md`).
The Docker image installs it that way. Pure Python stays the default, and the only
choice for an editable install, where a compiled module beside its source would
shadow every edit made to it. Everything else (metadata, dependencies) is in
`pyproject.toml`.
"""

import os
import sys

from setuptools import Extension, setup

COMPILED = ["rules/ids.py", "rules/pool_state.py", "rules/pool.py", "rules/engine.py"]
"""What an event passes through, compiled as one group: `Pool` extends `PoolState`, a
native class of another module. `rules/ordering.py` stays Python: compiled, its
generic merges can no longer be created from interpreted code (the replay's)."""


def ext_modules() -> list[Extension]:
    if os.environ.get("TOKENPOOL_COMPILE", "").lower() not in ("1", "true", "yes"):
        return []
    if "editable_wheel" in sys.argv:
        raise SystemExit(
            "TOKENPOOL_COMPILE=1 needs a regular install (pip install .): compiled "
            "modules in the source tree would shadow edits to their sources"
        )
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3")


setup(ext_modules=ext_modules())
