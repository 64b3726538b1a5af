"""The one exception base of atomsim. Every error says what was wrong and how to fix it.

Exit codes of the `atomsim` command (README, "Exit codes"):
"""

EXIT_OK = 0            # success
EXIT_ERROR = 2         # bad input or a failure atomsim names (every AtomsimError)
EXIT_OOM = 3           # the command worked, but its result includes out-of-memory (simulated or a real OOM kill)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT


class AtomsimError(Exception):
    """Base of every error atomsim raises on purpose. The CLI prints it and exits with `exit_code`."""

    exit_code = 2


class ConfigError(AtomsimError):
    """A scenario, study, device or profile file is malformed: names the file and the field."""


class ProfileError(ConfigError):
    """A profile is of an unknown version, lacks a field, or lacks a module/op a plan needs."""


class ModelStoreError(AtomsimError):
    """A weight file is missing, corrupt, or the store cannot be written."""


class VideoError(AtomsimError):
    """A video file cannot be opened or decoded."""


class StageError(AtomsimError):
    """A pipeline stage failed on real data (the runner): names the pipeline's file, the stage, its op."""


class OutputError(AtomsimError):
    """An output location cannot be written."""


def valid_names(kind: str, name: str, valid) -> str:
    """Message for an unknown name that lists the valid ones."""
    return f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}"
