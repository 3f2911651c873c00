"""Batch-wide losses under ``torch.distributed``: every process's rows, with gradients back to their owners."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` ``(B, ...)`` concatenated rank by rank ``(world * B, ...)``; itself when not distributed.

    Gradient-preserving: each process's gradient for a row is summed back to the row's owner. Every
    process must pass the same shape (Accelerate's ``even_batches``, the default, ensures it).
    """
    if not is_distributed():
        return tensor
    return torch.cat(_AllGather.apply(tensor).unbind(0))


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    """All processes' labels (no gradient) in :func:`gather_rows`' order."""
    if not is_distributed():
        return labels
    gathered = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, labels.contiguous())
    return torch.cat(gathered)


class _AllGather(torch.autograd.Function):
    """Every process's ``tensor``, stacked rank by rank; each process's gradient is summed back to its owner.

    What ``torch.distributed.nn.functional.all_gather`` did, which torch deprecates (a FutureWarning on every
    process, shown again after each checkpoint save) for a private module.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.stack(gathered)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss reads every process's rows
        return grad[dist.get_rank()]
