"""Files that appear whole: a reader sees the previous file or the next, never a part.

The scheduled report (`tokenpool plan --every`) rewrites a page a web server or a person
may be reading, and an interrupted export must not leave half a history behind.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

MODE = 0o644
"""Permissions of a finished file (a temporary file is private to its writer)."""


@contextlib.contextmanager
def replaced(path: str) -> Iterator[BinaryIO]:
    """A binary file that takes `path`'s place only once complete: written beside it
    under a temporary name, flushed to disk (fsync), then renamed over it (`os.replace`,
    atomic within a file system), and the folder synced so the rename survives a crash.
    On an error the temporary file is removed and `path` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every file system lets a folder be synced
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
