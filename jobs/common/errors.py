"""Errors a user can act on, each with the process exit code the command line returns for it.

0 ok · 1 a data-quality gate stopped the run · 2 bad input or configuration · 3 internal error.
"""


class PipelineError(RuntimeError):
    exit_code = 3
    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint:
            self.hint = hint


class DataQualityError(PipelineError):
    """A critical expectation failed or the row reconciliation does not balance."""

    exit_code = 1


class InputError(PipelineError):
    """Bad landing data, a missing source, a bad argument or configuration."""

    exit_code = 2
