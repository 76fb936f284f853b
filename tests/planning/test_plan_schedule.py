"""The scheduled report (issue point 5): `tokenpool plan --every PERIOD --out REPORT.html`
replaces the report whole every period, so a reader polling it never sees part of a
page; it lives through a period the broker fails and stops cleanly on SIGTERM/SIGINT."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import msgspec
from history_broker import ROOT, flags, fresh, lines_of, produce_lines

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

SEED = ROOT / "examples" / "seed-scenario.jsonl"
WAIT = 120.0
"""Seconds a test waits for the report service to get somewhere before it fails."""


class Page(HTMLParser):
    """Checks a page is whole: every tag it opens is closed, and it ends at </html>."""

    VOID = frozenset({"meta", "img", "br", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.closed_html = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()
        self.closed_html = tag == "html"

    @classmethod
    def whole(cls, data: bytes) -> bool:
        page = cls()
        try:
            page.feed(data.decode("utf-8"))
            page.close()
        except (AssertionError, UnicodeDecodeError):
            return False
        return page.closed_html and not page.open and b"<h1>Token plan</h1>" in data


class Poller(threading.Thread):
    """Reads the report as fast as it can; notes each read's inode and whether the page
    was whole. Holds the last file read open, so its inode cannot be reused by the next."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.inodes: list[int] = []
        self.partial = 0
        self.stop = threading.Event()

    def run(self) -> None:
        held = None
        while not self.stop.is_set():
            try:
                f = open(self.path, "rb")  # noqa: SIM115 (kept open until the next read)
            except FileNotFoundError:
                time.sleep(0.01)
                continue
            inode = os.fstat(f.fileno()).st_ino
            data = f.read()
            self.reads += 1
            if not Page.whole(data):
                self.partial += 1
            if not self.inodes or self.inodes[-1] != inode:
                self.inodes.append(inode)
            if held is not None:
                held.close()
            held = f
        if held is not None:
            held.close()


def start_report(config: StreamConfig, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app", "plan", *flags(config), "--every", "2s",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=ROOT,
    )


def wait_until(check, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert proc.poll() is None, f"the report service exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def stopped(proc: subprocess.Popen, sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_point5_every_period_replaces_the_report_whole(broker, tmp_path):
    config = fresh(broker)
    produce_lines(config, lines_of(SEED))
    reports = tmp_path / "reports"
    reports.mkdir()
    out, log = reports / "report.html", tmp_path / "report.log"
    proc = start_report(config, out, log)
    poller = Poller(out)
    poller.start()
    try:
        # The first report, then two periods that each replace it by a new file.
        wait_until(lambda: len(poller.inodes) >= 3, "three reports", proc, log)
        code = stopped(proc, signal.SIGTERM)
    finally:
        poller.stop.set()
        poller.join(10)
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert poller.partial == 0, f"{poller.partial} of {poller.reads} reads saw part of a page"
    assert poller.reads > len(poller.inodes)  # read while the next was being written
    events = len(lines_of(SEED))
    for run in (1, 2, 3):
        assert f"report run={run} written path={out} events={events}" in text
    assert "SIGTERM received, stopping" in text
    assert [p.name for p in reports.iterdir()] == ["report.html"]  # no temporary left


def test_point5_a_period_that_fails_is_logged_and_the_next_tries_again(broker, tmp_path):
    config = fresh(broker)
    produce_lines(config, lines_of(SEED))
    # The same topics but a session-start topic that does not exist yet.
    missing = msgspec.structs.replace(config, topics=msgspec.structs.replace(
        config.topics, session_start=config.topics.session_start + "-later"))
    out, log = tmp_path / "report.html", tmp_path / "report.log"
    proc = start_report(missing, out, log)
    try:
        wait_until(lambda: "report run=1 failed" in log.read_text(), "a failed period",
                   proc, log)
        assert not out.exists()
        assert f"no topic {missing.topics.session_start}" in log.read_text()
        asyncio.run(create_topics(missing))  # the missing topic appears
        produce_lines(missing, [x for x in lines_of(SEED) if b'"session-start"' in x])
        wait_until(out.exists, "a report once the topic exists", proc, log)
        code = stopped(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "written path=" in text and "SIGINT received, stopping" in text
