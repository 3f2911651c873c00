"""The ways a dataset can be unfit for image classification, each with its own class.

All are ``ValueError`` subclasses, so callers that only care that the input was wrong can catch
``ValueError``; each message names the problem and how to fix it.
"""


class DataError(ValueError):
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
