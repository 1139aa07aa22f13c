"""The command line's own error: a mistake in what the user asked for, said in one sentence."""


class UserError(Exception):
    """A mistake in what the user asked for; its message says what to do."""
