"""Several SDK harnesses per environment (Beam's --sdk_worker_parallelism),
and options the job server refuses."""

import os
import time

import grpc
import pytest

import apache_beam as beam
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from helpers import portable_options
from helpers import run_on


def slow_pid(_):
    # Slow enough that both runner threads are busy with bundles at once.
    time.sleep(0.02)
    return os.getpid()


def distinct_harnesses(expected):
    def build(p):
        pids = (p
                | beam.Create(list(range(60)))
                | beam.Reshuffle()
                | beam.Map(slow_pid)
                | beam.Distinct()
                | beam.combiners.Count.Globally())
        assert_that(pids, equal_to([expected]))
    return build


def test_sdk_worker_parallelism_starts_that_many_harnesses(job_server):
    run_on(distinct_harnesses(2),
           portable_options(job_server.endpoint, 'PROCESS',
                            extra=['--sdk_worker_parallelism=2', '--oxbeam_parallelism=2']))


def test_one_harness_per_environment_by_default(job_server):
    run_on(distinct_harnesses(1),
           portable_options(job_server.endpoint, 'PROCESS', extra=['--oxbeam_parallelism=2']))


def test_out_of_range_worker_counts_are_refused(job_server):
    with pytest.raises(grpc.RpcError) as e:
        run_on(lambda p: p | beam.Create([1]),
               portable_options(job_server.endpoint, extra=['--sdk_worker_parallelism=1000']))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'sdk_worker_parallelism must be a whole number from 0 to 64, not 1000' in e.value.details()
