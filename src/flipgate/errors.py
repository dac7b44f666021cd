"""The one exception type users see: a message that names the file or key and says what to do."""


class FlipgateError(Exception):
    """Bad input or configuration. The CLI and stages print it and exit non-zero."""
