"""Runners, as in ``apache_beam.runners``: every pipeline runs on Oxbeam's
local runner (Rust), with Python stages in this process — or, with
``--direct_running_mode=multi_processing``, in ``--direct_num_workers``
harness processes (:mod:`oxbeam.runners.worker`)."""

from oxbeam.runners.runner import PipelineResult, PipelineState  # noqa: F401


class DirectRunner(object):
    """Oxbeam's local runner, under Beam's name."""


OxbeamRunner = DirectRunner
