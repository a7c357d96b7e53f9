"""``TestPipeline``, as ``apache_beam.testing.test_pipeline``.

A :class:`~oxbeam.pipeline.Pipeline` for tests: its options come from
``--test-pipeline-options="..."`` (in ``argv``, else ``sys.argv``, else
``TestPipeline.pytest_test_pipeline_options`` as a pytest plugin sets it),
and ``run()`` waits for the result and checks the job succeeded.
"""

import shlex
import sys

from oxbeam.options.pipeline_options import PipelineOptions
from oxbeam.pipeline import Pipeline

__all__ = ["TestPipeline"]


class TestPipeline(Pipeline):
    """A pipeline for tests (``with TestPipeline() as p: ...``)."""

    # Not a test class for pytest.
    __test__ = False

    pytest_test_pipeline_options = None

    def __init__(self, runner=None, options=None, argv=None, is_integration_test=False,
                 blocking=True, additional_pipeline_args=None, display_data=None):
        self.is_integration_test = is_integration_test
        self.not_use_test_runner_api = False
        self.blocking = blocking
        self.options_list = self._parse_test_option_args(argv) + list(
            additional_pipeline_args or [])
        if options is None:
            options = PipelineOptions(self.options_list)
        Pipeline.__init__(self, runner, options)

    def run(self, test_runner_api=True):
        result = Pipeline.run(self, test_runner_api)
        if self.blocking:
            state = result.wait_until_finish()
            assert state in ("DONE", "CANCELLED"), "Pipeline execution failed."
        return result

    def get_pipeline_options(self):
        return self._options

    def _parse_test_option_args(self, argv):
        if argv is None:
            argv = sys.argv[1:]
        options = None
        for i, arg in enumerate(argv):
            if arg.startswith("--test-pipeline-options="):
                options = arg.split("=", 1)[1]
            elif arg == "--test-pipeline-options" and i + 1 < len(argv):
                options = argv[i + 1]
        if options is None:
            options = self.pytest_test_pipeline_options
        return shlex.split(options) if options else []

    def get_full_options_as_args(self, **extra_opts):
        """The test options plus ``extra_opts`` as ``--name=value`` flags."""
        options = list(self.options_list)
        for k, v in extra_opts.items():
            if v is None:
                continue
            if isinstance(v, bool):
                if v:
                    options.append("--%s" % k)
            elif isinstance(v, list):
                options.extend("--%s=%s" % (k, i) for i in v)
            else:
                options.append("--%s=%s" % (k, v))
        return options

    def get_option(self, opt_name, bool_option=False):
        """The value of test option ``--opt_name`` (True if a present flag
        with ``bool_option``), or None."""
        prefix = "--" + opt_name
        for i, arg in enumerate(self.options_list):
            if arg == prefix:
                if bool_option:
                    return True
                return self.options_list[i + 1] if i + 1 < len(self.options_list) else None
            if arg.startswith(prefix + "="):
                return arg.split("=", 1)[1]
        return None
