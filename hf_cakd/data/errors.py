"""The ways a dataset can be unfit for image classification, each with its own class.

All are :class:`~hf_cakd.errors.InputError` (exit code 3) and, as before, ``ValueError``
subclasses; each message names the problem and how to fix it.
"""

from ..errors import InputError


class DataError(InputError, ValueError):
    """A dataset cannot be used as given."""


class SplitNotFoundError(DataError):
    """A requested split is not in the dataset."""


class EmptySplitError(DataError):
    """A split has no rows."""


class ColumnNotFoundError(DataError):
    """A requested column is missing, or no column looks like the images or the labels."""


class LabelColumnError(DataError):
    """The label column does not hold integer class ids in range."""


class UndecodableImageError(DataError):
    """An image's bytes or file could not be decoded."""


class MissingImageError(UndecodableImageError):
    """A row has no image (an empty cell); skipped on request like an undecodable one."""
