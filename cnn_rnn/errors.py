"""The error types that entry points turn into a single clear line (experiments/cli.py).

Kept free of JAX imports, so that an entry point can catch them before it loads the library.
"""


class ConfigError(ValueError):
    """A user-facing configuration problem, naming the bad field and what is accepted."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient and the config says to stop."""
