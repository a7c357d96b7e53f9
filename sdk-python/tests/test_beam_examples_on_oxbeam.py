"""Apache Beam's own example programs and their tests, with only the import
changed (``apache_beam`` → ``oxbeam``), run on Oxbeam's Python SDK.

The examples (wordcount*, cookbook, complete, complete/game, the
documentation snippets and their per-transform tests) come from the
installed apache-beam package; their tests assert exact outputs. The
cases that do not pass are listed below with the reason, and the test
fails if any other case fails — or if a listed one starts passing (then
the list is out of date).
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

beam = pytest.importorskip("apache_beam")

EXAMPLES = os.path.join(os.path.dirname(beam.__file__), "examples")

# Files copied (relative to apache_beam/examples); tests needing GCP clients,
# SQL/enrichment extras or an external service are left out.
FILES = [
    "wordcount.py", "wordcount_test.py", "wordcount_minimal.py", "wordcount_minimal_test.py",
    "wordcount_debugging.py", "wordcount_debugging_test.py", "wordcount_with_metrics.py",
    "windowed_wordcount.py", "matrix_power.py", "matrix_power_test.py",
    "complete/autocomplete.py", "complete/distribopt.py", "complete/distribopt_test.py",
    "complete/estimate_pi.py", "complete/estimate_pi_test.py", "complete/tfidf.py",
    "complete/tfidf_test.py", "complete/top_wikipedia_sessions.py",
    "complete/top_wikipedia_sessions_test.py",
    "snippets/snippets.py", "snippets/snippets_test.py", "snippets/util.py",
    "snippets/util_test.py", "snippets/snippets_examples_wordcount_debugging.py",
    "snippets/snippets_examples_wordcount_minimal.py",
    "snippets/snippets_examples_wordcount_wordcount.py",
]
DIRS = ["cookbook", "complete/game", "snippets/transforms"]
SKIP_FILES = re.compile(r"(bigquery|bigtable|datastore|_it_test|enrichment|filters_test)")

# Cases that fail on Oxbeam, with why.
KNOWN_FAILURES = {
    # PeriodicImpulse as a slowly changing side input: needs the streaming
    # engine to run Python splittable DoFns.
    "snippets/snippets_test.py::SlowlyChangingSideInputsTest::test_side_input_slow_update",
}

PLUGIN = textwrap.dedent('''
    from oxbeam.testing.test_pipeline import TestPipeline

    def pytest_addoption(parser):
        parser.addoption("--test-pipeline-options")

    def pytest_configure(config):
        TestPipeline.pytest_test_pipeline_options = config.getoption(
            "test_pipeline_options", default="")
''')


def _copy(tmp):
    root = os.path.join(tmp, "swapex")
    for rel in FILES:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy(os.path.join(EXAMPLES, rel), os.path.join(root, rel))
    for d in DIRS:
        for dirpath, _, names in os.walk(os.path.join(EXAMPLES, d)):
            rel_dir = os.path.relpath(dirpath, EXAMPLES)
            if "__pycache__" in rel_dir:
                continue
            os.makedirs(os.path.join(root, rel_dir), exist_ok=True)
            for n in names:
                if n.endswith(".py") and not SKIP_FILES.search(n):
                    shutil.copy(os.path.join(dirpath, n), os.path.join(root, rel_dir, n))
    for dirpath, _, names in os.walk(root):
        open(os.path.join(dirpath, "__init__.py"), "a").close()
        for n in names:
            if n.endswith(".py"):
                p = os.path.join(dirpath, n)
                with open(p) as f:
                    src = f.read()
                src = src.replace("apache_beam.examples", "swapex").replace(
                    "apache_beam", "oxbeam")
                with open(p, "w") as f:
                    f.write(src)
    with open(os.path.join(tmp, "oxbeam_test_options.py"), "w") as f:
        f.write(PLUGIN)
    return root


def test_beam_examples_and_snippets_pass_on_oxbeam(tmp_path):
    tmp = str(tmp_path)
    root = _copy(tmp)
    temp_location = os.path.join(tmp, "temp")
    os.makedirs(temp_location)
    env = dict(os.environ, PYTHONPATH=tmp)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "oxbeam_test_options", "-p", "no:cacheprovider",
         "-q", "-rfE", "--continue-on-collection-errors",
         "--test-pipeline-options=--temp_location=%s" % temp_location,
         "-k", "not test_autocomplete_it", root],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    out = proc.stdout
    failed = set()
    for line in out.splitlines():
        m = re.match(r"(FAILED|ERROR) (\S+)", line)
        if m:
            failed.add(os.path.relpath(os.path.join(tmp, m.group(2)), root).split(" ")[0])
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    passed = int(re.search(r"(\d+) passed", summary).group(1)) if "passed" in summary else 0
    assert failed == KNOWN_FAILURES, "\n" + out[-6000:]
    # Every other collected case passed (about 190 in apache-beam 2.77).
    assert passed >= 150, summary
