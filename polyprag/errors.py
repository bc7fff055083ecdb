"""One error type for bad user input, so the CLI can print it without a stack trace."""


class InputError(ValueError):
    """Bad input from a user: the message names the value, where it came from, and the fix."""


class ConflictError(InputError):
    """A write refused because the knowledge base changed since it was read: another writer committed first."""
