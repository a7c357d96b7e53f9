"""Every test that takes the ``B`` fixture runs with Apache Beam's
DirectRunner (``import apache_beam as beam``) and with Oxbeam (``import
oxbeam as beam``): in process, with its Python stages in two harness
processes (``multi_processing``), and submitted to an ``oxbeam job-server``
(``--runner=PortableRunner``, when ``OXBEAM_BIN`` names the ``oxbeam``
binary), asserting the same exact output each time. Without apache-beam
installed only the Oxbeam runs happen."""

import importlib
import logging
import os
import socket
import subprocess
import time
import types

import pytest

logging.getLogger("apache_beam").setLevel(logging.ERROR)


# Oxbeam with its Python stages in two harness processes
# (``--direct_running_mode=multi_processing``).
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _sdk(param, job_endpoint=None):
    name, _, mode = param.partition(":")
    beam = importlib.import_module(name)
    util = importlib.import_module(name + ".testing.util")
    return types.SimpleNamespace(
        name=name,
        beam=beam,
        assert_that=util.assert_that,
        equal_to=util.equal_to,
        is_empty=util.is_empty,
        options=importlib.import_module(name + ".options.pipeline_options"),
        wv=importlib.import_module(name + ".utils.windowed_value"),
        ts=importlib.import_module(name + ".utils.timestamp"),
        mode=mode or "in_process",
        pipeline=lambda *args: beam.Pipeline(options=_options(name, mode, job_endpoint, args)),
    )


def _options(name, mode="", job_endpoint=None, extra=()):
    """The options of a ``B.pipeline(*extra)``: the SDK's mode, then
    ``extra`` flags (such as ``--allow_unsafe_triggers``)."""
    opts = importlib.import_module(name + ".options.pipeline_options")
    if name == "apache_beam":
        args = ["--direct_num_workers=1"]
    elif mode == "job_server":
        args = ["--runner=PortableRunner", "--job_endpoint=%s" % job_endpoint]
    else:
        args = list(MULTI_PROCESSING) if mode == "multi_processing" else []
    return opts.PipelineOptions(args + list(extra))


def _available():
    out = ["oxbeam", "oxbeam:multi_processing"]
    if os.environ.get("OXBEAM_BIN"):
        out.append("oxbeam:job_server")
    try:
        importlib.import_module("apache_beam")
        out.insert(0, "apache_beam")
    except ImportError:
        pass
    return out


@pytest.fixture(scope="session")
def oxbeam_job_server():
    """``oxbeam job-server`` on a free port of 127.0.0.1 (``OXBEAM_BIN``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([os.environ["OXBEAM_BIN"], "job-server", "--job_port", str(port),
                             "--log_level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("oxbeam job-server did not start")
            time.sleep(0.05)
    yield "localhost:%d" % port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(params=_available())
def B(request):
    if request.param.endswith(":job_server"):
        return _sdk(request.param, request.getfixturevalue("oxbeam_job_server"))
    return _sdk(request.param)


@pytest.fixture
def ox():
    return _sdk("oxbeam")
