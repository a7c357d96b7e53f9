"""Time domains of timers, as in ``apache_beam.transforms.timeutil``."""

__all__ = ["TimeDomain"]


class TimeDomain(object):
    """The clock a timer follows: the event-time watermark or processing time."""

    WATERMARK = "WATERMARK"
    REAL_TIME = "REAL_TIME"
    DEPENDENT_REAL_TIME = "DEPENDENT_REAL_TIME"

    _RUNNER_API_MAPPING = {WATERMARK: "EVENT_TIME", REAL_TIME: "PROCESSING_TIME"}

    @staticmethod
    def from_string(domain):
        if domain in (TimeDomain.WATERMARK, TimeDomain.REAL_TIME, TimeDomain.DEPENDENT_REAL_TIME):
            return domain
        raise ValueError("Unknown time domain: %s" % domain)

    @staticmethod
    def to_runner_api(domain):
        """The name of the ``TimeDomain.Enum`` value (proto3 JSON)."""
        return TimeDomain._RUNNER_API_MAPPING[domain]

    @staticmethod
    def is_event_time(domain):
        return TimeDomain.from_string(domain) == TimeDomain.WATERMARK
