"""Coders are chosen from element types (see :mod:`oxbeam.typehints`);
custom coders are not supported yet."""


class Coder(object):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("custom coders")
