"""Path (b) of `bench.stream_bench`: a Faust agent that forwards each record unchanged,
with the worker's Faust settings: Faust's own per-event cost, without tokenpool's.

`python -m bench.forward_app SPEC_JSON` runs it in the foreground (a Faust worker);
SPEC_JSON has `app_id`, `broker`, `web_port`, `data_dir`, `sources` and `sink`.
"""

import json
import logging
import sys
from typing import Any

from bench.harness.processes import SESSION_TIMEOUT

PARTITIONS = 4
FIRST_EVENT = "forward first event"
"""Logged with the agent's first event: when its processing starts."""

# The worker's Faust settings (stream_app/worker/wiring.py), given to the forward-only agent too.
FAUST_SETTINGS: dict[str, Any] = {
    "producer_linger": 0.005,
    "stream_buffer_maxsize": 16384,
    "stream_wait_empty": False,
    "broker_max_poll_records": 2000,
    "store": "memory://",
    "processing_guarantee": "at_least_once",
    "table_cleanup_interval": 3600.0,
    "topic_allow_declare": False,
    "web_enabled": True,
}


def faust_app(spec: dict[str, Any], **settings: Any) -> Any:
    """A Faust app with the worker's settings (`FAUST_SETTINGS`), `settings` on top."""
    import faust

    return faust.App(
        spec["app_id"],
        broker=f"kafka://{spec['broker']}",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        web_host="127.0.0.1",
        web_port=spec["web_port"],
        datadir=spec["data_dir"],
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=max(0.5, SESSION_TIMEOUT / 6),
        **{**FAUST_SETTINGS, **settings},
    )


def main(spec: dict[str, Any]) -> int:
    import faust

    app = faust_app(spec)
    raw = {"key_type": bytes, "value_type": bytes,
           "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(*spec["sources"], **raw)
    sink = app.topic(spec["sink"], **raw)
    flog = logging.getLogger("bench.forward")

    async def forward(stream: Any) -> None:
        first = True
        async for event in stream.events():
            if first:
                flog.info(FIRST_EVENT + " topic=%s", event.message.topic)
                first = False
            await sink.send(key=event.key, value=event.value)

    app.agent(source, name="forward")(forward)
    faust.Worker(app, loglevel="info").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
