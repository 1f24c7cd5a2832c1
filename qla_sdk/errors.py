"""Errors users see. Each message names the offending value and what is allowed."""


class QlaError(Exception):
    """Base class of the SDK's own errors."""


class ConfigError(QlaError, ValueError):
    """A configuration value (length config, recipe key, stage option) is invalid."""


class CheckpointError(QlaError, ValueError):
    """A checkpoint or artifact folder cannot be read as asked."""


class IntegrityError(CheckpointError):
    """An artifact file does not match the sha256 recorded for it."""


class TrainingDivergedError(QlaError, FloatingPointError):
    """The training loss became nan or inf."""
