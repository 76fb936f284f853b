"""The input topics' history written to a replay file, whole or not at all, for
`tokenpool export` and anyone who wants the same file from code."""

import asyncio
import gzip
from collections.abc import Callable
from typing import IO

from stream_app.atomic import replaced
from stream_app.config import StreamConfig
from stream_app.kafka.topic_history import ReadReport, Span, read_history


def export(config: StreamConfig, span: Span, path: str, *, progress: IO[str] | None = None,
           stop: Callable[[], bool] | None = None) -> ReadReport:
    """The history written to `path` (gzip when the name ends in `.gz`), whole or not at
    all: a failed or interrupted read leaves `path` as it was."""
    with replaced(path) as raw:
        if not path.endswith(".gz"):
            return asyncio.run(read_history(config, span, raw.write, progress=progress,
                                            stop=stop))
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=6) as gz:
            return asyncio.run(read_history(config, span, gz.write, progress=progress,
                                            stop=stop))
