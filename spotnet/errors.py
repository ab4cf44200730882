"""Errors that the CLI reports as one sentence with a non-zero exit, never as a traceback."""


__all__ = ["SpotnetError"]


class SpotnetError(Exception):
    """Bad input (scores, parameters, CSV, weights, store), described in one sentence for the user."""
