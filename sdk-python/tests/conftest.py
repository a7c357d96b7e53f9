"""Every test that takes the ``B`` fixture runs twice: with Apache Beam's
DirectRunner (``import apache_beam as beam``) and with Oxbeam (``import
oxbeam as beam``), asserting the same exact output both times. Without
apache-beam installed only the Oxbeam half runs."""

import importlib
import logging
import types

import pytest

logging.getLogger("apache_beam").setLevel(logging.ERROR)


# Oxbeam with its Python stages in two harness processes
# (``--direct_running_mode=multi_processing``).
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _sdk(param):
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
        pipeline=lambda: beam.Pipeline(options=_options(name, mode)),
    )


def _options(name, mode=""):
    opts = importlib.import_module(name + ".options.pipeline_options")
    if name == "apache_beam":
        return opts.PipelineOptions(["--direct_num_workers=1"])
    return opts.PipelineOptions(MULTI_PROCESSING if mode == "multi_processing" else [])


def _available():
    out = ["oxbeam", "oxbeam:multi_processing"]
    try:
        importlib.import_module("apache_beam")
        out.insert(0, "apache_beam")
    except ImportError:
        pass
    return out


@pytest.fixture(params=_available())
def B(request):
    return _sdk(request.param)


@pytest.fixture
def ox():
    return _sdk("oxbeam")
