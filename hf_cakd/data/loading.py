"""Load an image-classification dataset and find out which columns hold the images and labels.

Datasets name their columns differently (``img`` in CIFAR-10, ``image`` in most Hub datasets)
and store labels as ``ClassLabel``, bare integers or class names, so the columns are resolved
once here and carried along with the splits in :class:`ImageClassificationData`; class names are
encoded as a ``ClassLabel``. Everything that would otherwise fail later, deep inside a training
step (a missing split, a float label column, an unlabelled test split), fails here with a message
that says what to pass instead.

A Hub dataset the Hub cannot deliver (not cached while offline, not found, gated, the network
failed) raises :class:`~hf_cakd.hub_errors.HubAccessError` naming ``--dataset`` and the fix.

A streamed dataset (``streaming=True``) is never read ahead beyond the first row of each split used (an
empty split is refused): its class names come from the label column's ``ClassLabel`` feature, and split
sizes and label ranges go unchecked here
(:class:`~hf_cakd.data.DistillationTransform` checks each label as its row is read).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, IterableDatasetDict, Value

from ..hub_errors import HubAccessError, hub_failure
from .errors import ColumnNotFoundError, DataError, EmptySplitError, LabelColumnError, SplitNotFoundError

IMAGE_COLUMN_NAMES = ("img", "image", "pixel_values")
LABEL_COLUMN_NAMES = ("label", "labels")
EVAL_SPLIT_NAMES = ("test", "validation", "valid", "val")
IMAGE_VALUE_DTYPES = ("string", "large_string", "binary", "large_binary")
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}
CATEGORY_DTYPES = ("string", "large_string", "bool")  # label values that name a class
# datasets raises a bare ValueError for a split without rows, naming the split only in its message (datasets 5.2.0,
# arrow_reader.py); tests/test_upstream_messages.py fails when the message changes.
_EMPTY_SPLIT = re.compile(r'Instruction "(.+)" corresponds to no data')

logger = logging.getLogger(__name__)


@dataclass
class ImageClassificationData:
    """The train and eval splits of a dataset, and the columns and class names resolved for them.

    ``eval_split`` is the name of the split ``eval`` holds (the one picked when none was asked
    for), so reports and model cards can say what the accuracy was measured on.
    """

    train: Dataset | IterableDataset
    eval: Dataset | IterableDataset | None
    image_column: str
    label_column: str
    id2label: dict[int, str]
    eval_split: str | None = None

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @functools.cached_property
    def first_image_side(self) -> int:
        """The shorter side of the first training image (read once: on a stream, each read is a download)."""
        image = next(iter(self.train.cast_column(self.image_column, datasets.Image())))[self.image_column]
        return min(image.size)


def load_image_dataset(
    source: str | os.PathLike | Dataset | DatasetDict | IterableDataset | IterableDatasetDict,
    *,
    train_split: str = "train",
    eval_split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    data_files=None,
    streaming: bool = False,
    **load_dataset_kwargs,
) -> ImageClassificationData:
    """Load ``source`` and resolve its splits, image and label columns, and class names.

    Args:
        source: a Hub dataset name (``uoft-cs/cifar10``); a local directory of parquet or arrow
            files (splits from the file names, ``train*.parquet``, ``test*.parquet``, or from a
            ``save_to_disk`` layout) or of images in class subfolders (imagefolder, optionally
            under ``train/`` and ``test/``); a single ``.parquet`` or ``.arrow`` file (one
            ``train`` split); or a ``Dataset`` / ``DatasetDict`` (or their ``Iterable`` forms, a
            stream) already loaded.
        train_split: the split to train on.
        eval_split: the split to evaluate on; by default the first of test, validation, valid,
            val that exists, else no evaluation.
        image_column, label_column: found automatically when omitted: the column with a
            ``datasets.Image`` (or ``ClassLabel``) feature, else one named img/image/pixel_values
            (or label/labels).
        data_files: passed to ``datasets.load_dataset`` to pick files explicitly.
        streaming: load ``source`` with ``datasets.load_dataset(..., streaming=True)``: the splits
            are ``IterableDataset`` s read as they are used, never downloaded or prepared whole.
            The label column must then be a ``ClassLabel`` (class names and ids cannot be listed
            without reading every row); see the module docstring for what else goes unchecked.
        **load_dataset_kwargs: passed to ``datasets.load_dataset`` (``name``, ``revision``,
            ``cache_dir``, ...).
    """
    splits = _load_splits(source, data_files, streaming, load_dataset_kwargs)
    train = _get_split(splits, train_split, "train_split")
    eval_split = eval_split or next((name for name in EVAL_SPLIT_NAMES if name in splits), None)
    evaluation = _get_split(splits, eval_split, "eval_split") if eval_split else None

    used = {train_split: train} | ({eval_split: evaluation} if evaluation is not None else {})
    for name, split in used.items():
        if split.features is None:  # only a stream can lack them: its builder did not declare them
            raise DataError(
                f"The streamed {name!r} split does not declare its features (columns and their types), which a "
                "stream needs to find the images and the class names without reading ahead. Drop --streaming."
            )
    image_column = image_column or _detect_column(train, "image", datasets.Image, IMAGE_COLUMN_NAMES)
    label_column = label_column or _detect_label_column(train, image_column, _data_files_beside_images(source))
    for name, split in used.items():
        _require_columns(name, split, (image_column, label_column))
        _check_image_column(split, image_column)
    if _feature_name(train.features[label_column]) in CATEGORY_DTYPES:
        if isinstance(train, IterableDataset):
            raise _unnamed_classes_on_a_stream(label_column, train.features[label_column])
        used = _encode_class_names(used, label_column)
        train, evaluation = used[train_split], used.get(eval_split)
    id2label = _id2label(used, label_column)
    return ImageClassificationData(train, evaluation, image_column, label_column, id2label, eval_split)


def _load_splits(source, data_files, streaming, load_dataset_kwargs) -> DatasetDict | IterableDatasetDict:
    try:
        return _load_splits_from(source, data_files, streaming, load_dataset_kwargs)
    except OSError as err:
        cache = load_dataset_kwargs.get("cache_dir") or datasets.config.HF_DATASETS_CACHE
        in_cache = err.filename and Path(err.filename).absolute().is_relative_to(Path(cache).absolute())
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not in_cache:
            raise
        raise DataError(
            f"--dataset {source}: datasets cannot write its cache at {err.filename} ({os.strerror(err.errno)}). Set "
            f"HF_DATASETS_CACHE (now {cache}) or HF_HOME to a folder this process may write to, e.g. node-local "
            "scratch."
        ) from err


def _load_splits_from(source, data_files, streaming, load_dataset_kwargs) -> DatasetDict | IterableDatasetDict:
    if isinstance(source, (DatasetDict, IterableDatasetDict)):
        return source
    if isinstance(source, Dataset):
        return DatasetDict({"train": source})
    if isinstance(source, IterableDataset):
        return IterableDatasetDict({"train": source})
    source = os.fspath(source)
    if data_files is None and os.path.isfile(source):
        builder = FILE_BUILDERS.get(os.path.splitext(source)[1])
        if builder is None:
            raise DataError(
                f"Cannot load the file {source!r}: a single file must be {', '.join(FILE_BUILDERS)}. "
                "For image files, pass the directory that holds one subfolder per class."
            )
        return datasets.load_dataset(builder, data_files={"train": source}, streaming=streaming, **load_dataset_kwargs)
    if _saved_dataset(source):  # Dataset.save_to_disk's layout, which load_dataset refuses
        dataset = datasets.load_from_disk(source)
        return _load_splits_from(dataset.to_iterable_dataset() if streaming else dataset, None, False, {})
    try:
        return datasets.load_dataset(source, data_files=data_files, streaming=streaming, **load_dataset_kwargs)
    except Exception as err:  # datasets wraps the Hub's errors in several types of its own
        local = _local_failure(source, err) if os.path.exists(source) or _looks_like_a_path(source) else None
        if local is not None:
            raise local from err
        message = hub_failure(err, f"--dataset {source!r}", source, "dataset")
        if message is None:
            raise
        raise HubAccessError(message) from err


def _saved_dataset(source: str) -> bool:
    """Whether ``source`` is a folder written by ``Dataset.save_to_disk`` (a ``DatasetDict``'s loads as it is)."""
    return all(os.path.isfile(os.path.join(source, name)) for name in ("dataset_info.json", "state.json"))


def _looks_like_a_path(source: str) -> bool:
    """A name no Hub id can be (``/data/x``, ``./x``, ``~/x``, ``a/b/c``): a local path, even when missing."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


def _local_failure(source: str, err: Exception) -> DataError | None:
    """What kept ``datasets`` from loading the local ``source``, as one message naming it and the fix; None for
    an error that is no problem of the data (it propagates as it is)."""
    if not os.path.exists(source):
        return DataError(
            f"--dataset {source}: there is no such file or folder. Pass an existing folder, or a Hub dataset id."
        )
    empty_split = _EMPTY_SPLIT.search(str(err)) if isinstance(err, ValueError) else None
    if empty_split:
        return EmptySplitError(
            f"The {empty_split[1]!r} split of {source} has no rows. Remove its empty file(s), or add rows to them."
        )
    if isinstance(err, FileNotFoundError):  # datasets' EmptyDatasetError among them
        return DataError(
            f"--dataset {source} holds no data files datasets can read ({err}). Pass a folder of parquet / arrow / "
            "csv / json files, or of images in one subfolder per class."
        )
    if not isinstance(err, datasets.exceptions.DatasetGenerationError):
        return None
    cause = err
    while cause.__cause__ is not None:  # datasets wraps the reader's error (a schema that differs between files)
        cause = cause.__cause__
    reason = (str(cause).strip().splitlines() or [""])[0]
    return DataError(
        f"Cannot load --dataset {source}: {type(cause).__name__}: {reason}. Every file of a split, and every split, "
        "must have the same columns and types."
    )


def _get_split(splits: DatasetDict, name: str, argument: str) -> Dataset:
    if name not in splits:
        raise SplitNotFoundError(
            f"The dataset has no {name!r} split; its splits are: {', '.join(splits) or 'none'}. "
            f"Pass {argument}= naming one of them."
        )
    if isinstance(splits[name], Dataset) and len(splits[name]) == 0:
        sizes = ", ".join(f"{split} ({len(rows)} rows)" for split, rows in splits.items())
        raise EmptySplitError(f"The {name!r} split is empty. Pass {argument}= naming a split with rows: {sizes}.")
    # A stream's length is unknown: its first row (one read) tells an empty one, which would fail after training.
    if isinstance(splits[name], IterableDataset) and next(iter(splits[name].take(1)), None) is None:
        raise EmptySplitError(
            f"The streamed {name!r} split has no rows. Pass {argument}= naming a split with rows "
            f"(the splits are: {', '.join(splits)})."
        )
    return splits[name]


def _describe_columns(split: Dataset) -> str:
    return ", ".join(f"{name} ({_feature_name(feature)})" for name, feature in split.features.items())


def _feature_name(feature) -> str:
    return feature.dtype if isinstance(feature, Value) else type(feature).__name__


def _detect_column(split: Dataset, kind: str, feature_type: type, usual_names: tuple) -> str:
    """The only column typed ``feature_type``, else the first usual name among those columns."""
    typed = [name for name, feature in split.features.items() if isinstance(feature, feature_type)]
    if len(typed) == 1:
        return typed[0]
    named = [name for name in usual_names if name in (typed or split.features)]
    if named:
        return named[0]
    raise ColumnNotFoundError(
        f"Cannot tell which column holds the {kind}s; the columns are: {_describe_columns(split)}. "
        f"Pass {kind}_column= naming it."
    )


def _data_files_beside_images(source) -> list[str]:
    """The data files (parquet, arrow, ...) in the local folder ``source`` (or its ``data/``), which datasets ignores
    where its image files outnumber them (it then reads the folder as an image folder)."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return []
    folders = [source] + [os.path.join(source, "data")] * os.path.isdir(os.path.join(source, "data"))
    return sorted(
        os.path.relpath(os.path.join(folder, name), source)
        for folder in folders
        for name in os.listdir(folder)
        if os.path.splitext(name)[1] in FILE_BUILDERS and not name.startswith("metadata.")  # imagefolder's own
    )


def _detect_label_column(split: Dataset, image_column: str, data_files: list[str] = ()) -> str:
    if set(split.features) == {image_column} and data_files:  # datasets read the images, not the data files
        raise ColumnNotFoundError(
            f"datasets read the folder as an image folder, as its image files outnumber its data files "
            f"({', '.join(data_files[:3])}{', ...' if len(data_files) > 3 else ''}), which it ignored (image files "
            "in folders or with names like a split's, train/ or test*, count as that split's). Pass a folder of the "
            "data files alone, with the image column holding the images' bytes or absolute paths."
        )
    if set(split.features) == {image_column}:  # an image folder whose labels datasets could not infer
        raise ColumnNotFoundError(
            f"The dataset has no labels, only images ({_describe_columns(split)}). An image folder takes its labels "
            "from the subfolders its images sit in directly (train/<class>/<image>): use one per class, at least two, "
            "with no folders below them."
        )
    return _detect_column(split, "label", ClassLabel, LABEL_COLUMN_NAMES)


def _require_columns(split_name: str, split: Dataset, columns: tuple[str, ...]) -> None:
    missing = [column for column in columns if column not in split.features]
    if missing:
        raise ColumnNotFoundError(
            f"The {split_name!r} split has no column {', '.join(map(repr, missing))}; "
            f"its columns are: {_describe_columns(split)}. Pass image_column= / label_column= naming existing ones."
        )


def _check_image_column(split: Dataset, image_column: str) -> None:
    """Refuse numbers or class ids as images, which would fail later with a bare Arrow cast error.

    Strings (file paths), bytes, ``Image`` features and arrays can all be decoded as images.
    """
    feature = split.features[image_column]
    is_number = isinstance(feature, Value) and feature.dtype not in IMAGE_VALUE_DTYPES
    if is_number or isinstance(feature, ClassLabel):
        raise DataError(
            f"The image column {image_column!r} holds {_feature_name(feature)} values, not images "
            "(an Image feature, file paths or encoded bytes); the columns are: "
            f"{_describe_columns(split)}. Pass image_column= naming the images."
        )


def _encode_class_names(splits: dict[str, Dataset], label_column: str) -> dict[str, Dataset]:
    """Each split with its label column cast to one ``ClassLabel`` built from the names in all splits.

    ``class_encode_column`` on each split alone would number the classes of each split by
    itself, so a class missing from one split would shift the ids of the others.
    """
    names = datasets.concatenate_datasets([split.select_columns(label_column) for split in splits.values()])
    class_label = names.class_encode_column(label_column).features[label_column]
    logger.info(
        "Encoded the label column %r as %d classes: %s",
        label_column, class_label.num_classes, dict(enumerate(class_label.names)),
    )
    return {name: split.cast_column(label_column, class_label) for name, split in splits.items()}


def _id2label(splits: dict[str, Dataset], label_column: str) -> dict[int, str]:
    """Class names from a ``ClassLabel``, else ``LABEL_<i>`` (transformers' default) up to the largest id."""
    feature = next(iter(splits.values())).features[label_column]
    is_integer = isinstance(feature, Value) and feature.dtype.startswith(("int", "uint"))
    if not isinstance(feature, ClassLabel) and not is_integer:
        raise LabelColumnError(
            f"The label column {label_column!r} holds {_feature_name(feature)} values, not class ids or class "
            "names. If they are whole class ids, cast them first (dataset = dataset.cast_column("
            f"{label_column!r}, datasets.Value('int64')), then pass the dataset); otherwise pass label_column= "
            "naming an integer, string or ClassLabel column."
        )
    _check_same_class_names(splits, label_column)
    if isinstance(next(iter(splits.values())), IterableDataset):
        if not isinstance(feature, ClassLabel):
            raise _unnamed_classes_on_a_stream(label_column, feature)
        return dict(enumerate(_at_least_two(feature.names, label_column)))
    for name, split in splits.items():
        missing = split.with_format("arrow")[label_column].null_count
        if missing:
            raise LabelColumnError(
                f"The {name!r} split has {missing} row(s) without a label in column {label_column!r}. Drop them first "
                f"(dataset = dataset.filter(lambda label: label is not None, input_columns={label_column!r})), "
                "then pass the dataset."
            )
    # Each split's class ids, read once: their range is checked here, the ids no split uses are warned of below.
    used = {name: set(pc.unique(split.with_format("arrow")[label_column]).to_pylist()) for name, split in splits.items()}
    if isinstance(feature, ClassLabel):
        names = feature.names
    else:
        names = [f"LABEL_{i}" for i in range(max(max(ids) for ids in used.values()) + 1)]
    _at_least_two(names, label_column)
    for name, ids in used.items():
        if min(ids) < 0 or max(ids) >= len(names):
            raise LabelColumnError(
                f"The {name!r} split has labels from {min(ids)} to {max(ids)}, outside the {len(names)} classes "
                f"0..{len(names) - 1}. Label -1 usually marks unlabelled rows (a test split without labels): "
                "pass eval_split= naming a labelled split."
            )
    _warn_of_untrained_classes(used, names)
    return dict(enumerate(names))


def _check_same_class_names(splits: dict, label_column: str) -> None:
    """Refuse splits whose ``ClassLabel`` s number the classes differently: one split's ids would be read with
    another's names."""
    names = {name: split.features[label_column].names for name, split in splits.items()
             if isinstance(split.features[label_column], ClassLabel)}  # fmt: skip
    if len({tuple(n) for n in names.values()}) > 1:
        listed = "; ".join(f"{name}: {', '.join(n)}" for name, n in names.items())
        raise LabelColumnError(
            f"The splits' label columns {label_column!r} name their classes differently ({listed}), so one class "
            "would have two ids. Renumber one split to the other's classes first (dataset['test'] = "
            f"dataset['test'].align_labels_with_mapping(label2id, {label_column!r})), then pass the dataset."
        )


def _warn_of_untrained_classes(used: dict[str, set[int]], names: list[str]) -> None:
    """Warn of classes no training row has (``used``: each split's class ids, the train split's first): the ids the
    other splits use and the train split lacks, and ids below the largest that no split uses (integer labels number
    the classes up to the largest)."""
    train_name, trained = next(iter(used.items()))
    for name, ids in list(used.items())[1:]:
        if ids - trained:
            logger.warning(
                "The %r split has classes the %r split never shows, which the student cannot learn: %s.",
                name, train_name, ", ".join(str(names[i]) for i in sorted(ids - trained)),
            )  # fmt: skip
    unused = set(range(len(names))) - set().union(*used.values())
    if unused:
        logger.warning(
            "%d of the %d classes have no row in any split (%s): integer labels number the classes 0..%d. Renumber "
            "the labels 0..N-1 first, or keep the head's unused outputs.",
            len(unused), len(names), ", ".join(str(names[i]) for i in sorted(unused)[:10]), len(names) - 1,
        )  # fmt: skip


def _at_least_two(names: list[str], label_column: str) -> list[str]:
    if len(names) < 2:
        raise LabelColumnError(
            f"The label column {label_column!r} has {len(names)} class ({', '.join(map(str, names))}): a classifier "
            "needs at least two. Pass label_column= naming the column of class labels, or a dataset of several classes."
        )
    return names


def _unnamed_classes_on_a_stream(label_column: str, feature) -> LabelColumnError:
    return LabelColumnError(
        f"The label column {label_column!r} holds {_feature_name(feature)} values without class names, and a stream "
        "cannot be read ahead to list the classes. Pass the label names as a ClassLabel feature (in the dataset "
        "card's dataset_info, or load_image_dataset(..., features=...)), or drop --streaming."
    )
