"""Use a checkpoint trained on more (or differently ordered) classes for a dataset's labels.

An ImageNet-1k teacher can teach on a 10-class dataset when each dataset class names one of its
classes: the classifier keeps only those rows, in the dataset's order, so its logits are exactly
the original logits of the mapped classes. Nothing is re-initialised.

A dataset class may also stand for a *group* of checkpoint classes (CIFAR-10's ``"dog"`` for
ImageNet's 118 dog breeds): its probability is then the sum of theirs. The classifier's final
linear layer is replaced, in the model, by a :class:`GroupedClassifier` whose logit for each
dataset class is the ``logsumexp`` of its group's original logits, so that::

    softmax(grouped logits)[c] = sum_{k in group c} p_k / sum_{k in any group} p_k

the checkpoint's own probabilities, summed per group and renormalised over the kept classes.
A single-class group's logit is that class's original logit, exactly as with row selection.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .backbones import staged_view
from .errors import InputError, UsageError

logger = logging.getLogger(__name__)

FLAG = "--teacher_label_mapping"

LabelTarget = int | tuple[int, ...]
"""What a dataset class maps to: one checkpoint class id, or a group of them (two or more)."""


class LabelMappingError(InputError, ValueError):
    """A dataset label has no counterpart in the checkpoint's labels."""


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", " ")


def _shown(names, limit: int = 5) -> str:
    names = [str(name) for name in names]
    return ", ".join(repr(name) for name in names[:limit]) + (", ..." if len(names) > limit else "")


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(_normalise(name), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _explicit_targets(explicit: Mapping | None) -> dict[str, list[str]]:
    """``{dataset label: checkpoint label or [checkpoint labels]}`` -> normalised name -> list of names."""
    targets: dict[str, list[str]] = {}
    for key, value in (explicit or {}).items():
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise UsageError(
                f"{FLAG}: the value for {key!r} must be a teacher label or a non-empty list of teacher labels, "
                f"got {value!r}. Example: '{{\"{key}\": [\"<teacher label>\", \"<teacher label>\"]}}'."
            )
        targets[_normalise(key)] = list(value)
    return targets


def map_labels(
    checkpoint_id2label: dict[int, str],
    dataset_id2label: dict[int, str],
    explicit: Mapping[str, str | Sequence[str]] | None = None,
) -> dict[int, LabelTarget]:
    """Dataset class id -> checkpoint class id (or ids), by name (case and ``_`` insensitive).

    A checkpoint label may list synonyms separated by commas (ImageNet's ``"tabby, tabby cat"``);
    any of them matches, a whole label first (ImageNet's ``"partridge"``, not the synonym in
    ``"ruffed grouse, partridge, Bonasa umbellus"``). ``explicit`` maps dataset label names to checkpoint label names where the
    names differ (``{"automobile": "sports car"}``), or to a list of checkpoint labels whose
    probabilities add up to the dataset class's (``{"dog": ["beagle", "pug"]}``).

    A dataset class mapped to one checkpoint class gets an ``int``; one mapped to two or more
    distinct classes gets a ``tuple`` of ids, in the order given. Raises
    :class:`LabelMappingError` naming every dataset label without a match, every checkpoint label
    the mapping names that the checkpoint does not have, and every dataset label the mapping
    names that the dataset does not have.
    """
    targets = _explicit_targets(explicit)
    by_name = _checkpoint_ids_by_name(checkpoint_id2label)
    _check_mapped_labels_exist(explicit or {}, dataset_id2label)
    mapping: dict[int, LabelTarget] = {}
    missing, unknown = [], []
    for index, name in dataset_id2label.items():
        wanted = targets.get(_normalise(name))
        if wanted is None:  # by name
            if _normalise(name) in by_name:
                mapping[int(index)] = by_name[_normalise(name)]
            else:
                missing.append(name)
            continue
        ids = []
        for teacher_label in wanted:
            if _normalise(teacher_label) not in by_name:
                unknown.append((name, teacher_label))
            elif by_name[_normalise(teacher_label)] not in ids:  # a synonym listed twice counts once
                ids.append(by_name[_normalise(teacher_label)])
        if ids:
            mapping[int(index)] = ids[0] if len(ids) == 1 else tuple(ids)
    _check_all_matched(unknown, missing, by_name, checkpoint_id2label)
    _warn_about_shared_classes(mapping, dataset_id2label, checkpoint_id2label)
    return mapping


def _checkpoint_ids_by_name(checkpoint_id2label: dict[int, str]) -> dict[str, int]:
    """Normalised checkpoint label (and each comma-separated synonym) -> its class id.

    A whole label wins over another class's synonym (ImageNet's "partridge" is class 86, not the
    synonym in 82's "ruffed grouse, partridge, Bonasa umbellus"); then the first class wins.
    """
    by_name: dict[str, int] = {}
    for index, names in checkpoint_id2label.items():
        by_name.setdefault(_normalise(names), int(index))
    for index, names in checkpoint_id2label.items():
        for name in str(names).split(","):
            by_name.setdefault(_normalise(name), int(index))
    return by_name


def _check_mapped_labels_exist(explicit: Mapping[str, object], dataset_id2label: dict[int, str]) -> None:
    dataset_names = {_normalise(name) for name in dataset_id2label.values()}
    not_in_dataset = [key for key in explicit if _normalise(key) not in dataset_names]
    if not_in_dataset:
        key = not_in_dataset[0]
        raise LabelMappingError(
            f"{FLAG} maps labels the dataset does not have: {_shown(not_in_dataset)}. Correct {key!r}"
            f"{_did_you_mean(key, dataset_names)} or remove it; the dataset's labels are "
            f"{_shown(dataset_id2label.values(), 10)}."
        )


def _check_all_matched(unknown: list, missing: list, by_name: dict[str, int], checkpoint_id2label: dict) -> None:
    """Refuse teacher labels the checkpoint lacks (``unknown``: dataset label, teacher label) and dataset
    labels nothing matched (``missing``), naming them and the fix."""
    if unknown:
        dataset_label, teacher_label = unknown[0]
        listed = ", ".join(f"{t!r} (for {d!r})" for d, t in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise LabelMappingError(
            f"{FLAG} names teacher labels the checkpoint does not have: {listed}. Correct {teacher_label!r}"
            f"{_did_you_mean(teacher_label, by_name)} or remove it from the list for {dataset_label!r}; teacher "
            "labels match by name, case and '_' insensitive, or by any comma-separated synonym "
            f"(checkpoint labels look like {_shown(checkpoint_id2label.values())})."
        )
    if missing:
        raise LabelMappingError(
            f"No checkpoint label matches the dataset labels {missing}. Map them explicitly, e.g. "
            f"{FLAG} '{{\"{missing[0]}\": \"<checkpoint label>\"}}', or to several checkpoint labels whose "
            f"probabilities add up: '{{\"{missing[0]}\": [\"<checkpoint label>\", \"<checkpoint label>\"]}}' "
            f"(checkpoint labels look like {list(checkpoint_id2label.values())[:5]})."
        )


def _groups(mapping: Mapping[int, int | Sequence[int]]) -> list[tuple[int, ...]]:
    """One tuple of checkpoint ids per dataset class, in dataset-id order."""
    targets = [target for _, target in sorted(mapping.items())]
    return [(target,) if isinstance(target, int) else tuple(int(t) for t in target) for target in targets]


def _warn_about_shared_classes(mapping, dataset_id2label, checkpoint_id2label) -> None:
    owners: dict[int, list[str]] = {}
    for index, group in zip(sorted(mapping), _groups(mapping)):
        for row in group:
            owners.setdefault(row, []).append(str(dataset_id2label[index]))
    for row, names in owners.items():
        if len(names) > 1:
            logger.warning(
                "The teacher class %r counts towards several dataset classes: %s.", checkpoint_id2label.get(row), names
            )


class GroupedClassifier(nn.Module):
    """A linear classifier whose class ``c`` logit is ``logsumexp`` of its group's original logits.

    ``linear`` holds only the original rows some group uses (each once); ``index`` is a
    ``(num_classes, max_group_size)`` table of positions in those rows, padded where ``valid`` is
    False. Softmax over the outputs equals the original class probabilities summed per group and
    renormalised over all grouped classes; a one-row group's logit is that row's logit.
    """

    def __init__(self, linear: nn.Linear, groups: Sequence[Sequence[int]]):
        super().__init__()
        rows = sorted({row for group in groups for row in group})
        position = {row: i for i, row in enumerate(rows)}
        width = max(len(group) for group in groups)
        index = torch.zeros(len(groups), width, dtype=torch.long)
        valid = torch.zeros(len(groups), width, dtype=torch.bool)
        for c, group in enumerate(groups):
            index[c, : len(group)] = torch.tensor([position[row] for row in group])
            valid[c, : len(group)] = True
        kept = torch.tensor(rows)
        self.linear = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
        self.linear.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight[kept])
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias[kept])
        self.linear.requires_grad_(linear.weight.requires_grad)
        self.register_buffer("index", index.to(linear.weight.device), persistent=False)
        self.register_buffer("valid", valid.to(linear.weight.device), persistent=False)
        self.in_features, self.out_features = linear.in_features, len(groups)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.linear(hidden)  # (..., rows)
        grouped = logits[..., self.index]  # (..., classes, width)
        grouped = grouped.masked_fill(~self.valid, float("-inf"))
        return torch.logsumexp(grouped, dim=-1)

    def extra_repr(self) -> str:
        sizes = self.valid.sum(dim=1).tolist()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rows={self.linear.out_features}, group_sizes={sizes}"
        )


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> int:
    """Put ``new`` wherever ``model`` holds ``old`` (a layer may be registered under several names)."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, name, new)
                replaced += 1
    return replaced


@torch.no_grad()
def restrict_classifier(
    model: nn.Module, mapping: Mapping[int, int | Sequence[int]], dataset_id2label: dict[int, str]
) -> nn.Module:
    """Give ``model`` the dataset's classes; relabel the config. Changes ``model`` in place and returns it.

    ``mapping`` is :func:`map_labels`' result: dataset class id -> checkpoint class id, or a
    sequence of ids whose probabilities add up. When every class has one id, the classifier keeps
    those rows, in dataset order. Otherwise each final linear layer of the head (both of a
    distilled DeiT's) is replaced by a :class:`GroupedClassifier`, in the model itself, so a staged
    view built afterwards sees it. (A two-head model averages the two heads' grouped logits.)
    """
    num_old = model.config.num_labels
    groups = _groups(mapping)
    heads = [m for m in staged_view(model).head.modules() if isinstance(m, nn.Linear) and m.out_features == num_old]
    if not heads:
        raise LabelMappingError(f"Found no classification layer with {num_old} outputs in {type(model).__name__}.")
    if all(len(group) == 1 for group in groups):
        rows = torch.tensor([group[0] for group in groups])
        for linear in heads:
            linear.weight = nn.Parameter(linear.weight[rows].clone())
            if linear.bias is not None:
                linear.bias = nn.Parameter(linear.bias[rows].clone())
            linear.out_features = len(rows)
    else:
        for linear in heads:
            if not _replace_module(model, linear, GroupedClassifier(linear, groups)):
                raise LabelMappingError(f"Cannot replace the classification layer of {type(model).__name__}.")
    id2label = {int(i): str(n) for i, n in dataset_id2label.items()}
    model.config.update({"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}})
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        timm_model.num_classes = len(id2label)
    return model
