"""Whether this process ever made an output wrapper.

DoFn outputs that are ``TaggedOutput``, ``TimestampedValue`` or
``WindowedValue`` instances are routed (tag, timestamp, windows) instead of
passed on. Their classes set ``created`` when an instance is made (by a
call, unpickling or copying: all go through ``__new__``), so until then the
runtime knows no output can be one and skips scanning outputs' types.
"""

created = False


def note_created(cls):
    """``__new__`` of the wrapper classes."""
    global created
    created = True
    return object.__new__(cls)
