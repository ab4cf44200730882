"""Errors that the CLI reports as one sentence with a non-zero exit, never as a traceback."""


__all__ = ["FlowkitError"]


class FlowkitError(Exception):
    """Bad input or an unusable environment, described in one sentence for the user."""
