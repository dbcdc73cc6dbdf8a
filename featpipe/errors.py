"""User-facing errors.

A :class:`FeatpipeError` is a mistake the user can fix (a missing folder, an unknown layer,
a store without labels). Its message is one line; the CLI prints it without a traceback and
exits 1 (2 for :class:`UsageError`). It subclasses ``ValueError`` so that the Python API
raises what scikit-learn users expect.
"""


class FeatpipeError(ValueError):
    """A problem with the user's input, reported as one clear line."""

    exit_code = 1


class UsageError(FeatpipeError):
    """A malformed command line or argument combination (CLI exit code 2)."""

    exit_code = 2


class FeatpipeWarning(UserWarning):
    """Something the user should know that did not stop the work (the CLI prints one line)."""
