"""Errors a user can cause and fix; the CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input (a file, a flag, a value): the message names it and says what is wrong."""
