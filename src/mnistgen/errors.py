"""Errors that the CLI reports as one line on stderr with exit code 2."""


class MnistgenError(Exception):
    """A problem with the user's input or environment, not a bug in mnistgen."""


class DataError(MnistgenError):
    """Data could not be found, read, or failed verification."""


class ConfigError(MnistgenError):
    """Unknown preset, bad override, or inconsistent configuration."""


class CheckpointError(MnistgenError):
    """A checkpoint is missing, truncated, or belongs to something else."""


class TrainingDiverged(MnistgenError):
    """A loss became NaN or infinite; the last good checkpoint was kept."""


class TrainingStopped(Exception):
    """Training ended early: a signal (``signum`` set; exit 128 + signum) or an unexpected error
    (exit 1). The message says what was saved and how to resume."""

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple:  # keeps signum when a worker process sends it back (reproduce --jobs)
        return type(self), (str(self), self.signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 1
