"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class DaptError(Exception):
    """A mistake the user can fix (bad params, missing data or weights, a corrupt file).

    The message names the problem and the fix; ``dapt`` prints it as one line and exits 2.
    """


class DatasetMissingError(DaptError):
    """The files of a dataset are not where they are expected; the message names the fix."""


class CorruptImageError(DaptError):
    """An image or data file that cannot be decoded; the message names the file."""
