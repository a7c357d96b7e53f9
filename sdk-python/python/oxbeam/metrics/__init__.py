"""User metrics, as in ``apache_beam.metrics``."""

from oxbeam.metrics.metric import Metrics, MetricsFilter  # noqa: F401
