"""The real broker fixtures of tests/stream, reused here without copying them
(`tests/stream_fixtures.py`): the planning commands read the broker's input topics."""

from stream_fixtures import load

_fixtures = load("tokenpool_stream_fixtures_planning")

broker_log = _fixtures.broker_log
broker = _fixtures.broker
broker_kind = _fixtures.broker_kind
