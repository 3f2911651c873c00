"""Use a checkpoint trained on more (or differently ordered) classes for a dataset's labels.

An ImageNet-1k teacher can teach on a 10-class dataset when each dataset class names one of its
classes: the classifier keeps only those rows, in the dataset's order, so its logits are exactly
the original logits of the mapped classes. Nothing is re-initialised.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import staged_view
from .errors import InputError


class LabelMappingError(InputError, ValueError):
    """A dataset label has no counterpart in the checkpoint's labels."""


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", " ")


def map_labels(
    checkpoint_id2label: dict[int, str], dataset_id2label: dict[int, str], explicit: dict[str, str] | None = None
) -> dict[int, int]:
    """Dataset class id -> checkpoint class id, by name (case and ``_`` insensitive).

    A checkpoint label may list synonyms separated by commas (ImageNet's ``"tabby, tabby cat"``);
    any of them matches. ``explicit`` maps dataset label names to checkpoint label names where the
    names differ (``{"automobile": "sports car"}``).
    """
    explicit = {_normalise(k): _normalise(v) for k, v in (explicit or {}).items()}
    by_name: dict[str, int] = {}
    for index, names in checkpoint_id2label.items():
        for name in (str(names), *str(names).split(",")):
            by_name.setdefault(_normalise(name), int(index))
    mapping, missing = {}, []
    for index, name in dataset_id2label.items():
        wanted = explicit.get(_normalise(name), _normalise(name))
        if wanted in by_name:
            mapping[int(index)] = by_name[wanted]
        else:
            missing.append(name)
    if missing:
        raise LabelMappingError(
            f"No checkpoint label matches the dataset labels {missing}. Map them explicitly, e.g. "
            f"--teacher_label_mapping '{{\"{missing[0]}\": \"<checkpoint label>\"}}' (checkpoint labels look like "
            f"{list(checkpoint_id2label.values())[:5]})."
        )
    return mapping


@torch.no_grad()
def restrict_classifier(model: nn.Module, mapping: dict[int, int], dataset_id2label: dict[int, str]) -> nn.Module:
    """Keep the classifier rows ``mapping`` selects, in dataset order; relabel the config."""
    num_old = model.config.num_labels
    rows = torch.tensor([mapping[i] for i in sorted(mapping)])
    heads = [m for m in staged_view(model).head.modules() if isinstance(m, nn.Linear) and m.out_features == num_old]
    if not heads:
        raise LabelMappingError(f"Found no classification layer with {num_old} outputs in {type(model).__name__}.")
    for linear in heads:
        linear.weight = nn.Parameter(linear.weight[rows].clone())
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias[rows].clone())
        linear.out_features = len(rows)
    id2label = {int(i): str(n) for i, n in dataset_id2label.items()}
    model.config.update({"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}})
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        timm_model.num_classes = len(id2label)
    return model
