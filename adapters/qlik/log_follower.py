"""Reads proxy audit logs line by line, across rotation and restarts.

A file is known by its identity (device, inode), not its name: when Qlik rotates
`<host>_AuditActivity_Proxy.txt` (renames it and starts a new one) the cursor reads the
old file to its end, then the new one from its start. Only complete lines are taken;
a half-written last line waits for its newline. The position (identity and byte
offset after the last line taken) is saved only after the caller's events for those
lines were acknowledged, so a restart neither re-sends nor skips a line; if the file
was rotated while the adapter was down, the old file is looked for by inode in the
log's folder and the archive folders given, and finished first.
"""

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.audit_log import Header, parse_header, parse_line
from adapters.qlik.keepalive import KeepAliveState

log = logging.getLogger("tokenpool.qlik.audit")


class Position(msgspec.Struct, frozen=True):
    device: int
    inode: int
    offset: int
    head: str = ""
    """Hash of the file's first bytes (up to `offset`, at most 4 KiB): an inode can be
    reused by a new file after the old one was deleted, its first bytes cannot."""


_HEAD_BYTES = 4096


def _head_hash(fd: int, length: int) -> str:
    data = os.pread(fd, min(length, _HEAD_BYTES), 0)
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _same_file(path: Path, saved: Position) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return ((st.st_dev, st.st_ino) == (saved.device, saved.inode)
                and (not saved.head or _head_hash(fd, saved.offset) == saved.head))
    finally:
        os.close(fd)


class _Saved(msgspec.Struct):
    positions: dict[str, Position] = {}
    keepalive: KeepAliveState | None = None


class PositionStore:
    """Saved positions per log path, and the keep-alive's state as of those positions,
    in one JSON file replaced atomically: the two always agree after a restart.
    A file of the older layout (positions only) is read too."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.positions: dict[str, Position] = {}
        self.keepalive: KeepAliveState | None = None
        if path is not None and path.exists():
            try:
                raw = path.read_bytes()
                document = msgspec.json.decode(raw)
                if isinstance(document, dict) and isinstance(document.get("positions"), dict):
                    saved = msgspec.json.decode(raw, type=_Saved)
                    self.positions, self.keepalive = saved.positions, saved.keepalive
                else:
                    self.positions = msgspec.json.decode(raw, type=dict[str, Position])
            except msgspec.DecodeError as exc:
                raise ValueError(f"position file {path}: {exc}") from None

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(_Saved(self.positions, self.keepalive)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Line(msgspec.Struct, frozen=True):
    item: Activity | Rejected
    where: str


class LogCursor:
    """One audit log path: the open file, its header and the offset read up to."""

    def __init__(self, path: Path, saved: Position | None,
                 archive_dirs: Iterable[Path] = ()) -> None:
        self.path = path
        self.archive_dirs = [path.parent, *archive_dirs]
        self._file: int | None = None
        self._identity: tuple[int, int] | None = None
        self.offset = 0
        self._header: Header | Rejected | None = None
        self._line_no = 0
        self._rest = b""
        self._pending_after_old: bool = False
        self._resume(saved)

    # -- opening -----------------------------------------------------------------

    def _open(self, path: Path, offset: int) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self._close()
        self._file, self._identity = fd, (st.st_dev, st.st_ino)
        self._header, self._rest, self._line_no = None, b"", 0
        if offset > st.st_size:
            log.warning("path=%s is shorter than the saved offset %d: truncated, read from "
                        "the start", path, offset)
            offset = 0
        if offset > 0:
            self._read_header_only()
        self.offset = offset
        return True

    def _close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _resume(self, saved: Position | None) -> None:
        if saved is None:
            self._open(self.path, 0)
            return
        if _same_file(self.path, saved):
            self._open(self.path, saved.offset)
            return
        old = self._find_by_inode(saved)
        if old is not None:
            log.info("path=%s was rotated while stopped: finishing %s from offset %d",
                     self.path, old, saved.offset)
            self._open(old, saved.offset)
            self._pending_after_old = True
            return
        log.warning("path=%s was rotated while stopped and the old file (inode %d) is not in "
                    "%s: lines written to it after offset %d are lost", self.path, saved.inode,
                    ", ".join(map(str, self.archive_dirs)), saved.offset)
        self._open(self.path, 0)

    def _find_by_inode(self, saved: Position) -> Path | None:
        for folder in self.archive_dirs:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.inode() != saved.inode:
                        continue
                except OSError:
                    continue
                if _same_file(Path(entry.path), saved):
                    return Path(entry.path)
        return None

    def _read_header_only(self) -> None:
        assert self._file is not None
        first = os.pread(self._file, 64 * 1024, 0).split(b"\n", 1)[0]
        self._header = parse_header(first.decode("utf-8", "replace").lstrip("\ufeff"))
        self._line_no = -1  # line numbers are unknown after a resume

    # -- reading -----------------------------------------------------------------

    def position(self) -> Position | None:
        if self._identity is None or self._file is None:
            return None
        return Position(self._identity[0], self._identity[1], self.offset,
                        _head_hash(self._file, self.offset))

    def read(self, max_lines: int = 5000) -> list[Line]:
        """Complete lines since the last call (parsed), following rotation."""
        if self._file is None and not self._open(self.path, 0):
            return []
        lines = self._read_available(max_lines)
        if lines:
            return lines
        if self._rotated():
            lines = self._read_available(max_lines)  # whatever the old file still got
            if lines:
                return lines
            if self._rest:
                log.warning("path=%s: the rotated file ends without a newline: its last %d "
                            "bytes are ignored", self.path, len(self._rest))
            log.info("path=%s rotated: reading the new file", self.path)
            self._pending_after_old = False
            self._open(self.path, 0)
            return self._read_available(max_lines)
        return lines

    def _rotated(self) -> bool:
        if self._pending_after_old:
            return True
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed away, the new one not created yet
        if (st.st_dev, st.st_ino) != self._identity:
            return True
        if st.st_size < self.offset + len(self._rest):
            log.warning("path=%s was truncated: reading it from the start", self.path)
            self._identity = None
        return self._identity is None

    def _read_available(self, max_lines: int) -> list[Line]:
        assert self._file is not None
        out: list[Line] = []
        while len(out) < max_lines:
            chunk = os.pread(self._file, 1 << 20, self.offset + len(self._rest))
            if not chunk:
                break
            data = self._rest + chunk
            parts = data.split(b"\n")
            self._rest = parts.pop()
            start = self.offset
            for raw in parts:
                end = start + len(raw) + 1
                out.append(self._parse(raw, start))
                start = end
                self.offset = end
                if len(out) >= max_lines:
                    # Give back what was read past the limit.
                    self._rest = b""
                    break
        return out

    def _parse(self, raw: bytes, start: int) -> Line:
        where = f"{self.path}@{start}"
        if self._line_no >= 0:
            self._line_no += 1
            where = f"{self.path}:{self._line_no}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Line(Rejected(reason=f"not UTF-8 at byte {exc.start}"), where)
        if self._header is None:
            self._header = parse_header(text.lstrip("\ufeff"))
            if isinstance(self._header, Rejected):
                return Line(self._header, where)
            return Line(Rejected(reason="header", skipped=True), where)
        if isinstance(self._header, Rejected):
            return Line(Rejected(reason=f"no usable header: {self._header.reason}"), where)
        return Line(parse_line(self._header, text), where)

    def close(self) -> None:
        self._close()
