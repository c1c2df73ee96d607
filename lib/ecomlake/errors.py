"""User-facing errors: jobs print their message (no stack trace) and exit with status 2."""


class EcomlakeError(Exception):
    """A problem the user can fix: bad input, bad config, a missing table or file."""


class ConfigError(EcomlakeError):
    """A config file or override that does not fit the schema (names the key)."""


class InputError(EcomlakeError):
    """An input file or table that cannot be used as it is (names the file, column or table)."""


def require_columns(df, columns, what):
    """Fail with a message naming the missing columns of `what` (a table or file)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what} is missing column(s) {', '.join(missing)}; it has: {', '.join(df.columns)}"
        )
