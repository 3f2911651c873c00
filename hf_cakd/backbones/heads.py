"""Pre-logits: what a staged view's classifier reads, caught while the head runs.

Every adapter's head ends in ``nn.Linear`` classifier(s) applied to a pooled, normalised vector
(``(B, D)``), but heads differ in how they get there (timm's ``forward_head`` with its pooling
options, transformers' poolers, DeiT's two classifiers averaged). Rather than rebuild each head,
the head runs once as it is, with hooks that record the input of its classifier(s):

* the classifiers are the trailing run of ``nn.Linear`` calls whose width is the logits' (one
  for most heads; DeiT's distilled heads call two on two tokens and average their logits);
* an ``nn.Dropout`` that feeds a classifier directly is looked through (an in-place one is
  given a copy of its input first), so pre-logits are the vector before the head's dropout in
  training mode too (that dropout regularises the classifier, not the representation);
  functional dropout inside a model method cannot be seen and stays;
* with several classifiers, the pre-logits are their inputs concatenated, in call order.

In evaluation mode, ``mean_k(classifier_k(chunk_k(pre_logits))) == logits``
(:func:`classify_pre_logits`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from ..errors import InputError


def head_with_pre_logits(head: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, pre_logits)`` of ``head`` on a stage-4 output, the head run once."""
    logits, pre_logits, _ = _run_recorded(head, hidden)
    return logits, pre_logits


def head_classifiers(head: nn.Module, hidden: torch.Tensor) -> list[nn.Linear]:
    """The classifier ``nn.Linear`` modules of ``head`` (in call order), found by running it on ``hidden``."""
    return _run_recorded(head, hidden)[2]


def classify_pre_logits(classifiers: list[nn.Linear], pre_logits: torch.Tensor) -> torch.Tensor:
    """The logits the classifiers give on ``pre_logits`` (chunks in order, logits averaged)."""
    chunks = pre_logits.split([linear.in_features for linear in classifiers], dim=-1)
    return torch.stack([linear(chunk) for linear, chunk in zip(classifiers, chunks)]).mean(dim=0)


def _run_recorded(head: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[nn.Linear]]:
    linear_calls: list[tuple[nn.Linear, torch.Tensor]] = []
    dropouts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (output, input): kept alive, compared by identity
    handles = []
    for module in head.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(lambda m, args: linear_calls.append((m, args[0]))))
        elif isinstance(module, _DropoutNd):
            handles.append(module.register_forward_pre_hook(_keep_dropout_input))
            handles.append(module.register_forward_hook(lambda m, args, out: dropouts.append((out, m._kept_input))))
    try:
        logits = head(hidden)
    finally:
        for handle in handles:
            handle.remove()
        for module in head.modules():
            module.__dict__.pop("_kept_input", None)
    if not linear_calls or linear_calls[-1][0].out_features != logits.shape[-1]:
        raise InputError(
            f"Cannot find the classifier of the head {type(head).__name__}: pre-logits need a head whose last "
            "nn.Linear produces the logits."
        )
    last = linear_calls[-1][0]
    start = len(linear_calls) - 1
    while start > 0 and _same_shape(linear_calls[start - 1][0], last):
        start -= 1
    classifiers, inputs = [], []
    for linear, value in linear_calls[start:]:
        for output, before in reversed(dropouts):
            if output is value:
                value = before
                break
        if value.dim() != 2:
            raise InputError(
                f"The classifier of {type(head).__name__} reads a {tuple(value.shape)} tensor, not (batch, features)."
            )
        classifiers.append(linear)
        inputs.append(value)
    return logits, inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1), classifiers


def _keep_dropout_input(module: _DropoutNd, args: tuple) -> None:
    # An in-place dropout overwrites its input: keep a copy (one (B, D) vector per call).
    value = args[0]
    module._kept_input = value.clone() if module.inplace and module.training and module.p > 0 else value


def _same_shape(linear: nn.Linear, classifier: nn.Linear) -> bool:
    return linear.out_features == classifier.out_features and linear.in_features == classifier.in_features
