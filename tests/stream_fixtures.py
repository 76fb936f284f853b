"""The real broker fixtures of tests/stream, for the test folders beside it.

pytest shares conftest fixtures only down a directory tree, so a folder that needs the
broker (tests/adapters, tests/planning) loads tests/stream/conftest.py under a module
name of its own and re-exports its fixtures; `kafka_helpers` and `stream_harness`
(beside it) are put on the import path the way tests/stream gets them.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

STREAM = Path(__file__).resolve().parent / "stream"


def load(name: str) -> ModuleType:
    """tests/stream/conftest.py, loaded as module `name`."""
    if str(STREAM) not in sys.path:
        sys.path.insert(0, str(STREAM))
    spec = importlib.util.spec_from_file_location(name, STREAM / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
