"""The spatial-agnostic InfoNCE of FBT (docs/method.md, "fbt"): smooth, project, contrast.

Pixel-wise losses fail across architectures because a CNN map and a ViT token grid keep the same
knowledge at different places. Averaging over space first removes the layout; contrasting
images of the batch then matches what each model knows about an image without asking where.
The trainer composes the pieces: ``info_nce(proj_x(spatial_smooth(f_x)), proj_y(...), tau())``.
"""

from __future__ import annotations

import math
from typing import Literal, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..backbones.base import StageInfo, to_map
from .distributed import gather_labels, gather_rows, is_distributed

Pooling = Union[Literal["avg"], int]


TEMPERATURE_BOUNDS = (0.01, 1.0)
"""The range a :class:`LearnableTemperature` is clamped to by default (and FBT's ``fbt_infonce_temperature`` starts in)."""


def spatial_smooth(
    feature: torch.Tensor, info: StageInfo, pooling: Pooling = "avg", use_cls: bool = False
) -> torch.Tensor:
    """A stage output without its spatial layout: ``(B, C)``, or ``(B, C * k * k)``.

    Args:
        feature: a map ``(B, C, H, W)`` or tokens ``(B, N, D)`` as described by ``info``.
        pooling: ``"avg"`` for global average pooling (prefix tokens dropped), or an int ``k``
            for adaptive average pooling to ``k x k``, flattened channel-major: keeps a coarse
            layout for when full smoothing loses too much.
        use_cls: take the first prefix token (the class token) instead of pooling.
    """
    if use_cls:
        if info.num_prefix_tokens < 1:
            raise ValueError(f"use_cls needs a token layout with a class token, got {info}")
        return feature[:, 0]
    feature_map = to_map(feature, info)
    if pooling == "avg":
        return feature_map.mean(dim=(2, 3))
    if isinstance(pooling, int) and not isinstance(pooling, bool) and pooling >= 1:
        return F.adaptive_avg_pool2d(feature_map, pooling).flatten(1)
    raise ValueError(f"pooling must be 'avg' or a positive int k, got {pooling!r}")


def smoothed_dim(info: StageInfo, pooling: Pooling = "avg", use_cls: bool = False) -> int:
    """The width of :func:`spatial_smooth`'s output, to size a :class:`FeatureProjector`."""
    if use_cls or pooling == "avg":
        return info.channels
    return info.channels * pooling * pooling


class FeatureProjector(nn.Module):
    """``Linear -> GELU -> Linear`` from a model's smoothed feature to the shared space.

    Each model gets its own projector, so features of different widths and statistics meet in
    one space of width ``out_dim`` (256 by default: our assumption, not the paper's). The hidden
    width defaults to ``2 * out_dim`` rather than ``in_dim`` so that k x k pooled inputs (width
    ``C * k * k``) do not make the projector quadratic in that width. No normalisation layer:
    :func:`info_nce` L2-normalises the output, and a BatchNorm would break on a batch of one.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or 2 * out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LearnableTemperature(nn.Module):
    """The InfoNCE temperature ``tau``, learned as ``log tau`` and clamped in ``forward``.

    The log keeps ``tau`` positive and makes its steps relative. The clamp keeps it from
    collapsing (a tiny ``tau`` makes the softmax one-hot and the gradients explode) or growing
    until all similarities look alike; inside the range the gradient flows, past a bound it
    is zero, so the bound holds. Keep ``log_tau`` out of weight decay.
    """

    def __init__(self, init: float = 0.07, min: float = TEMPERATURE_BOUNDS[0], max: float = TEMPERATURE_BOUNDS[1]):
        super().__init__()
        if not 0 < min <= init <= max:
            raise ValueError(f"need 0 < min <= init <= max, got min={min}, init={init}, max={max}")
        self.min, self.max = min, max
        self.log_tau = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(self.min, self.max)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"


def info_nce(
    z_x: torch.Tensor,
    z_y: torch.Tensor,
    temperature: torch.Tensor | float,
    gather_across_processes: bool = True,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two views ``(B, d)`` of the same batch, in float32.

    Both are L2-normalised; ``logits = z_x @ z_y.T / tau``; image ``i`` of one model is the
    positive of image ``i`` of the other, every other image is a negative; the loss is the mean
    of the x->y and y->x cross-entropies. A batch of one has no negatives and gives exactly 0.

    With ``labels`` (``(B,)`` class indices, or ``(B, C)`` target distributions read by their
    argmax), images of the same class are not negatives: pair ``(i, j)``, ``j != i``, with
    ``labels[i] == labels[j]`` leaves the denominator (the positive ``(i, i)`` stays). An image
    whose class fills the batch then has no negatives and contributes 0.

    Under ``torch.distributed`` with several processes and ``gather_across_processes``, the
    other processes' embeddings join as negatives through a gradient-preserving all-gather, so
    the effective batch is the global one. Each process returns the loss of its own rows; with
    DDP averaging the gradients, that is the gradient of the global-batch loss. Every process must
    pass the same local batch size (Accelerate's ``even_batches``, the default, ensures it).

    Autocast is switched off inside: a float16 ``z_x @ z_y.T / tau`` at ``tau = 0.01`` overflows.
    """
    with torch.autocast(device_type=z_x.device.type, enabled=False):
        z_x = F.normalize(z_x.float(), dim=-1)
        z_y = F.normalize(z_y.float(), dim=-1)
        if torch.is_tensor(temperature):
            temperature = temperature.float()
        all_x, all_y, offset = _gather(z_x, z_y) if gather_across_processes else (z_x, z_y, 0)
        targets = torch.arange(z_x.shape[0], device=z_x.device) + offset
        logits_xy = z_x @ all_y.T / temperature
        logits_yx = z_y @ all_x.T / temperature
        if labels is not None:
            classes = labels.argmax(dim=-1) if labels.dim() > 1 else labels
            all_classes = gather_labels(classes) if gather_across_processes else classes
            same_class = classes[:, None] == all_classes[None, :]
            same_class[torch.arange(len(classes), device=classes.device), targets] = False  # keep the positive
            logits_xy = logits_xy.masked_fill(same_class, float("-inf"))
            logits_yx = logits_yx.masked_fill(same_class, float("-inf"))
        loss_xy = F.cross_entropy(logits_xy, targets)
        loss_yx = F.cross_entropy(logits_yx, targets)
        return (loss_xy + loss_yx) / 2


def _gather(z_x: torch.Tensor, z_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """All processes' ``z_x`` and ``z_y`` (with gradients back to each owner) and this rank's offset."""
    if not is_distributed():
        return z_x, z_y, 0
    # One collective for both views: stack them, gather, then split along the stacked axis.
    all_x, all_y = gather_rows(torch.stack((z_x, z_y), dim=1)).unbind(1)
    return all_x, all_y, dist.get_rank() * z_x.shape[0]
