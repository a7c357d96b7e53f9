"""Beam's wordcount example, with only the import changed, produces the
same output as apache-beam's own."""

import glob
import os
import subprocess
import sys

import pytest

TEXT = """\
KING LEAR. Attend the lords of France and Burgundy, Gloucester.
GLOUCESTER. I shall, my liege.
What's the matter? It's the king's daughter, the king's!
  Nothing will come of nothing: speak again.
"""


def _output(prefix):
    lines = []
    for f in glob.glob(prefix + "*"):
        with open(f) as fh:
            lines.extend(fh.read().splitlines())
    return sorted(lines)


def _run(module, tmp_path, name):
    inp = tmp_path / "input.txt"
    inp.write_text(TEXT * 50)
    out = str(tmp_path / name / "counts")
    subprocess.run(
        [sys.executable, "-m", module, "--input", str(inp), "--output", out],
        check=True, capture_output=True, cwd=str(tmp_path), timeout=300,
    )
    return _output(out)


def test_wordcount_matches_apache_beam(tmp_path):
    ox = _run("oxbeam.examples.wordcount", tmp_path, "oxbeam")
    assert "the: 200" in ox and "king's: 100" in ox and "KING: 50" in ox
    pytest.importorskip("apache_beam")
    ab = _run("apache_beam.examples.wordcount", tmp_path, "beam")
    assert ox == ab


def test_wordcount_source_differs_only_in_imports():
    beam_wc = pytest.importorskip("apache_beam.examples.wordcount")
    import oxbeam.examples.wordcount as ox_wc

    with open(beam_wc.__file__) as f:
        theirs = f.read().replace("apache_beam", "oxbeam")
    with open(ox_wc.__file__) as f:
        ours = f.read()
    assert ours == theirs
