"""The real broker fixtures of tests/stream, reused here without copying them.

pytest only shares conftest fixtures down a directory tree, so the module is loaded
under its own name and its fixtures re-exported; `kafka_helpers` (beside it) is put on
the import path the same way tests/stream gets it.
"""

import importlib.util
import sys
from pathlib import Path

_STREAM = Path(__file__).resolve().parents[1] / "stream"
if str(_STREAM) not in sys.path:
    sys.path.insert(0, str(_STREAM))

_spec = importlib.util.spec_from_file_location("tokenpool_stream_fixtures",
                                               _STREAM / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

broker_log = _fixtures.broker_log
broker = _fixtures.broker
stream_config = _fixtures.stream_config
broker_kind = _fixtures.broker_kind
