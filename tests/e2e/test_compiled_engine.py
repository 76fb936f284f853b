"""The engine compiled with mypyc (`TOKENPOOL_COMPILE=1`, how the image installs it)
behaves exactly like the Python it is compiled from: every rule (R1-R13) holds, and
a synthetic site gives byte-identical outputs, ids and snapshots.

The wheel is built the way the Dockerfile builds it and unpacked into a temporary
directory; children started with `python -P` import the compiled package from there.
"""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import compiled

ROOT = Path(__file__).resolve().parents[2]

DIGEST = """
import hashlib, sys
from rules import Engine
from schemas import encode, input_decoder
from stream_app.site.synthetic import generate

def digest():
    engine, h, out = Engine(), hashlib.sha256(), []
    for i, (topic, event) in enumerate(generate(users=600, groups=6, days=9, seed=7)):
        engine.apply(input_decoder(topic).decode(encode(event)), out)
        if i % 5000 == 0:
            h.update(engine.snapshot())
            h.update(b''.join(map(encode, out)))
            out.clear()
            engine = Engine.restore(engine.snapshot())
    engine.advance(10**17, out)
    h.update(b''.join(map(encode, out)))
    h.update(engine.snapshot())
    return h.hexdigest()
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compiled.build(tmp_path_factory.mktemp("compiled"))


def child(site: Path, code: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", code], env=compiled.env(site, ROOT),
        capture_output=True, text=True, timeout=timeout, cwd=site,
    )


def test_the_wheel_is_built_from_what_the_image_copies_and_as_it_compiles() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {part for line in re.findall(r"^COPY (.+)$", dockerfile, re.M)
              for part in line.split()[:-1]}
    assert copied == set(compiled.SOURCES)
    assert "TOKENPOOL_COMPILE=1 pip install" in dockerfile


def test_the_wheel_holds_the_compiled_engine(site: Path) -> None:
    done = child(site, "from bench import compiled; import rules.pool as p;"
                       "assert compiled.is_compiled(), p.__file__; print(p.__file__)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(site))
    assert not compiled.is_compiled(), "this process must run the Python sources"


def test_compiled_and_python_engines_give_identical_outputs_ids_and_snapshots(
    site: Path,
) -> None:
    done = child(site, DIGEST + "\nfrom bench import compiled\n"
                                "assert compiled.is_compiled()\nprint(digest())")
    assert done.returncode == 0, done.stderr[-3000:]
    scope: dict[str, object] = {}
    exec(DIGEST, scope)
    here = scope["digest"]()  # type: ignore[operator]
    assert done.stdout.strip() == here
    assert len(here) == len(hashlib.sha256().hexdigest())


def test_every_rule_test_passes_on_the_compiled_engine(site: Path) -> None:
    """R1-R13, the output ids and the property tests, against the compiled modules
    (imported before pytest starts, so nothing on its path can replace them)."""
    code = (
        "import sys, pytest\n"
        "from bench import compiled\n"
        "assert compiled.is_compiled()\n"
        f"sys.exit(pytest.main([{str(ROOT / 'tests' / 'rules')!r}, '-q', "
        "'-p', 'no:cacheprovider', '-x']))\n"
    )
    done = child(site, code, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert " passed" in done.stdout
