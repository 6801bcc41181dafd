"""The one error type that entry points turn into a single clear line."""


class ConfigError(ValueError):
    """A user-facing configuration problem, naming the bad field and what is accepted."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
