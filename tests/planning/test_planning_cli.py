"""`tokenpool plan` and `tokenpool estimate --from-history` end to end: the text
report, PNG files, a self-contained HTML report that headless Chromium opens with
every plot decoded, and bad input reported with a reason."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from schemas.plan import PlanDoc
from stream_app.commands.main import main

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "examples" / "history-90d.jsonl.gz"
SEED = ROOT / "examples" / "seed-scenario.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("passes-in-use", "returns-calendar", "passes-per-user")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp("plan")
    html, png = out / "report.html", out / "png"
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "plan", str(HISTORY), "--out", str(html),
         "--png", str(png), "--tokens", "knowledge-workers=40", "--top", "3"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr
    return html, png, result.stdout


def test_plan_prints_the_seed_formula_per_group(report):
    _, _, text = report
    assert ("knowledge-workers: 103 people x 4 passes x (1 + 20%) / 10 = 49.44 -> 50 tokens"
            in text)
    assert re.search(r"^knowledge-workers\s+50 -> 40\s+0 -> [1-9]", text, re.M)  # what-if
    assert "login access would be cheaper for 9 UAP holders" in text


def test_plan_top_lists_who_consumed_the_most_passes_in_text_and_html(report):
    """Point 4: `--top 3` prints, per group, the 3 people with the most passes in the
    last 28 days, and the HTML report holds them as a table (R12: UAP cheaper above
    10 passes)."""
    html, _, text = report
    rows = re.findall(r"^  (\S+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(yes|no)$", text,
                      re.M)
    groups = [r[0] for r in rows]
    assert {g: groups.count(g) for g in groups} == {
        "analysts": 3, "data-engineers": 3, "knowledge-workers": 3, "managers": 3}
    assert all(r[5] == ("yes" if int(r[2]) > 10 else "no") for r in rows)
    page = html.read_text()
    table = page[page.index("id='top-users'"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + len(rows)  # the head and one row per person
    for r in rows:
        assert f"<td>{r[1]}</td><td>{r[2]}</td>" in table


def test_plan_writes_each_plot_as_png(report):
    _, png, _ = report
    for name in PLOTS:
        data = (png / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC), name


def test_html_report_is_self_contained(report):
    html, _, _ = report
    text = html.read_text()
    assert text.count("src='data:image/png;base64,") == len(PLOTS)
    # Nothing to fetch at view time: no remote or relative resource.
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    assert "url(" not in text and "@import" not in text


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian chromium is needed: apt-get install chromium (.ci/run does)")
    return path


def test_html_report_opens_in_headless_chromium_with_every_plot_decoded(report, tmp_path):
    html, _, _ = report
    # A copy with a probe: after load, each image's decoded width and any script error
    # are written into the DOM, which Chromium then dumps.
    probe = (
        "<script>window.addEventListener('error',e=>document.body.setAttribute("
        "'data-error',String(e.message)));window.addEventListener('load',()=>{"
        "for(const i of document.images){i.setAttribute('data-width',"
        "String(i.complete?i.naturalWidth:0))}document.body.setAttribute('data-probed','1')"
        "})</script></body>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.read_text().replace("</body>", probe))
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--enable-logging=stderr", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-probed="1"' in dom
    assert 'data-error="' not in dom
    assert "Uncaught" not in result.stderr
    widths = dict(re.findall(r'<img id="([a-z-]+)"[^>]*data-width="(\d+)"', dom))
    assert set(widths) == set(PLOTS)
    assert all(int(w) > 0 for w in widths.values()), widths


def test_estimate_from_history_gives_the_seed_formula_per_group(capsys):
    assert main(["estimate", "--from-history", str(HISTORY)]) == 0
    out = capsys.readouterr().out
    assert ("knowledge-workers: 103 people x 4 passes x (1 + 20%) / 10 = 49.44 -> 50 tokens"
            in out)
    assert main(["estimate", "--from-history", str(HISTORY), "--json"]) == 0
    estimates = json.loads(capsys.readouterr().out)
    assert estimates["knowledge-workers"]["tokens"] == 50
    assert "executives" not in estimates  # UAP holders only: no login access to buy


def test_plan_json_is_the_plan_document_with_the_same_figures(capsys):
    """`plan --json` prints `schemas.plan.PlanDoc` (decoded strictly here), with the
    figures the text gives: the seed formula (R12), the peak, UAP advice, --top."""
    assert main(["plan", str(HISTORY), "--json", "--top", "2"]) == 0
    doc = msgspec.json.decode(capsys.readouterr().out, type=PlanDoc)
    groups = {g.group: g for g in doc.groups}
    kw = groups["knowledge-workers"]
    assert (kw.people, kw.formula.exact, kw.formula.tokens, kw.peak_demand) == (
        103, "49.44", 50, 412)
    assert groups["data-engineers"].actual.ran_dry_at is not None
    assert len(doc.to_lap) == 9 and all(s.to == "login_access" for s in doc.to_lap)
    assert kw.top is not None and [u.passes for u in kw.top] == [4, 4]
    assert groups["executives"].top == []
    assert doc.what_if_tokens is None and kw.what_if is None
    assert sum(d.passes for d in kw.returns) == 412


def test_r12_estimate_keeps_the_seed_formula(capsys):
    assert main(["estimate", "--people", "103", "--passes", "4"]) == 0
    assert "-> 50 tokens" in capsys.readouterr().out
    assert main(["estimate", "--people", "103"]) == 2
    assert "--from-history" in capsys.readouterr().err


def test_plan_reports_malformed_lines_and_goes_on(tmp_path, capsys):
    history = tmp_path / "bad.jsonl"
    history.write_text(SEED.read_text() + "not json\n")
    assert main(["plan", str(history)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"bad\.jsonl:\d+: skipped: not a replay record", captured.err)
    assert re.search(r"^analysts\s+1\s+0\s+", captured.out, re.M)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file"), ("", "no valid input event"), ("garbage\n", "no valid input")],
)
def test_plan_without_a_usable_history_exits_2_with_a_reason(tmp_path, capsys, content, reason):
    history = tmp_path / "h.jsonl"
    if content is not None:
        history.write_text(content)
    assert main(["plan", str(history)]) == 2
    assert reason in capsys.readouterr().err


def test_plan_refuses_a_malformed_what_if(capsys):
    with pytest.raises(SystemExit):
        main(["plan", str(SEED), "--tokens", "analysts"])
    assert "GROUP=TOKENS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "reason"),
    [(["--since", "90d"], "--since, --from and --until read the broker: give no file"),
     (["--every", "1h", "--out", "r.html"], "--every reads the broker's topics"),
     (["--every", "1h"], None)],
)
def test_plan_refuses_what_a_history_file_cannot_do(tmp_path, capsys, flags, reason):
    """A span and --every read the broker's topics (points 3 and 5); --every needs --out."""
    args = ["plan", *flags] if reason is None else ["plan", str(SEED), *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (reason or "--every needs --out REPORT.html") in err
