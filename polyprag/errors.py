"""One error type for bad user input, so the CLI can print it without a stack trace."""


class InputError(ValueError):
    """Bad input from a user: the message names the value, where it came from, and the fix."""
