"""Errors raised for bad user input. The CLI prints their message as one line, without a traceback."""


class GroverInputError(ValueError):
    """Input that GROVER Lens cannot use; the message names the problem and the fix."""
