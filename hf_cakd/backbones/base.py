"""The staged view: any vision classifier seen as ``stem -> stage1..stage4 -> head``.

Every module in a :class:`StagedBackbone` is the wrapped model's own module (shared, never
copied), so a stage can be called on an activation that did not come from its own model: the
assistant (fusion) model runs the attention/MLP model's stage 4 on the output of a bridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import InputError
from .heads import head_with_pre_logits

Family = Literal["cnn", "attention", "mlp"]
Layout = Literal["map", "tokens"]
FAMILIES: tuple[Family, ...] = ("cnn", "attention", "mlp")
NUM_STAGES = 4


class UnsupportedArchitectureError(InputError, ValueError):
    """Raised for a model no registered adapter understands, or one that cannot be cut into four stages."""


@dataclass(frozen=True)
class StageInfo:
    """What one stage outputs.

    ``layout`` is ``"map"`` for ``(B, C, H, W)`` tensors and ``"tokens"`` for ``(B, N, D)``
    sequences whose first ``num_prefix_tokens`` entries are class/distillation tokens and whose
    remaining ``H * W`` entries are the spatial grid in row-major order.
    """

    layout: Layout
    channels: int
    grid: tuple[int, int]
    num_prefix_tokens: int = 0

    def __post_init__(self):
        if self.layout not in ("map", "tokens"):
            raise ValueError(f"layout must be 'map' or 'tokens', got {self.layout!r}")
        if self.layout == "map" and self.num_prefix_tokens:
            raise ValueError("a 'map' layout cannot carry prefix tokens")


@dataclass
class StagedOutput:
    """Logits and the four stage outputs; ``pre_logits`` (what the classifier reads) when the view captures it."""

    logits: torch.Tensor
    features: tuple[torch.Tensor, ...]
    pre_logits: torch.Tensor | None = None


def to_map(feature: torch.Tensor, info: StageInfo) -> torch.Tensor:
    """Any stage output as a ``(B, C, H, W)`` map; prefix tokens are dropped."""
    if info.layout == "map":
        return feature
    tokens = feature[:, info.num_prefix_tokens :]
    height, width = info.grid
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def to_tokens(feature: torch.Tensor, info: StageInfo) -> torch.Tensor:
    """Any stage output as ``(B, H*W, C)`` spatial tokens; prefix tokens are dropped."""
    if info.layout == "tokens":
        return feature[:, info.num_prefix_tokens :]
    return feature.flatten(2).transpose(1, 2)


class StagedBackbone(nn.Module):
    """A classifier split into a stem, four stages and a head, plus what each stage outputs.

    Args:
        model: the full classifier (kept so the view can be traced back to what it wraps).
        family: ``"cnn"``, ``"attention"`` or ``"mlp"``: the module function of the stages.
        stem, stages, head: the model's own modules; ``head(stages[3](...(stem(x))))`` equals
            the model's logits.
        stage_infos: one :class:`StageInfo` per stage at ``image_size``.
        image_size: the input resolution ``(H, W)`` the stage infos describe.
        runs_on_any_grid: the stages and the head also run on token grids other than the stage
            infos' (attention over a set of tokens, no position-sized layer after the stem), so the
            assistant may feed stage 4 a smaller grid (FusionBridge's ``upsample=False``).
    """

    def __init__(
        self,
        model: nn.Module,
        family: Family,
        stem: nn.Module,
        stages: list[nn.Module],
        head: nn.Module,
        stage_infos: list[StageInfo],
        image_size: tuple[int, int],
        runs_on_any_grid: bool = False,
    ):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        if len(stages) != NUM_STAGES or len(stage_infos) != NUM_STAGES:
            name = type(getattr(model, "timm_model", model)).__name__
            raise UnsupportedArchitectureError(
                f"a staged view has exactly {NUM_STAGES} stages, but this {name} has {len(stages)}: hf_cakd reads "
                f"every model as stem, {NUM_STAGES} stages and head. Use a configuration with {NUM_STAGES} stages "
                f"({NUM_STAGES} entries in hidden_sizes/depths), or register an adapter that groups its stages into "
                f"{NUM_STAGES} (@hf_cakd.backbones.register_adapter)."
            )
        self.family = family
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.stage_infos = tuple(stage_infos)
        self.image_size = tuple(image_size)
        self.runs_on_any_grid = runs_on_any_grid
        # Not registered as a submodule: the stages above already hold its parameters.
        self.__dict__["model"] = model
        # When set, outputs carry ``pre_logits`` (see hf_cakd.backbones.heads); a method that reads
        # them sets it on the views it was given.
        self.capture_pre_logits = False

    def forward(self, pixel_values: torch.Tensor) -> StagedOutput:
        return self.forward_from(0, self.stem(pixel_values))

    def forward_from(self, stage_index: int, hidden: torch.Tensor) -> StagedOutput:
        """Run stages ``stage_index..4`` (0-based index) and the head on a given stage input."""
        features = []
        for stage in self.stages[stage_index:]:
            hidden = stage(hidden)
            features.append(hidden)
        if self.capture_pre_logits:
            logits, pre_logits = head_with_pre_logits(self.head, hidden)
            return StagedOutput(logits=logits, features=tuple(features), pre_logits=pre_logits)
        return StagedOutput(logits=self.head(hidden), features=tuple(features))

    def example_stage_output(self, stage_index: int = 3, batch_size: int = 1) -> torch.Tensor:
        """Zeros shaped like stage ``stage_index``'s output (0-based), on the view's device and dtype."""
        info = self.stage_infos[stage_index]
        parameter = next(self.parameters())
        height, width = info.grid
        shape = (
            (batch_size, info.channels, height, width)
            if info.layout == "map"
            else (batch_size, info.num_prefix_tokens + height * width, info.channels)
        )
        return torch.zeros(shape, device=parameter.device, dtype=parameter.dtype)

    def pre_logits_dim(self) -> int:
        """The width of ``pre_logits``: the head is run once, in evaluation mode, on zeros."""
        modes = {module: module.training for module in self.head.modules()}
        self.head.eval()
        try:
            with torch.no_grad():
                _, pre_logits = head_with_pre_logits(self.head, self.example_stage_output())
        finally:
            for module, training in modes.items():
                module.training = training
        return pre_logits.shape[-1]

    def extra_repr(self) -> str:
        stages = ", ".join(
            f"{info.layout}{'+' + str(info.num_prefix_tokens) if info.num_prefix_tokens else ''}"
            f"[{info.channels}@{info.grid[0]}x{info.grid[1]}]"
            for info in self.stage_infos
        )
        return f"family={self.family}, image_size={self.image_size}, stages=({stages})"


class TooFewBlocksError(InputError, ValueError):
    """An isotropic model has fewer blocks than the staged view has stages."""


def check_enough_blocks(num_blocks: int, num_groups: int = NUM_STAGES) -> None:
    """Every method reads a model as ``num_groups`` stages of at least one block each."""
    if num_blocks < num_groups:
        raise TooFewBlocksError(
            f"an isotropic model needs at least {num_groups} blocks to be split into {num_groups} stages, this one "
            f"has {num_blocks}. Give it at least {num_groups} blocks (depth, num_hidden_layers or num_blocks)."
        )


def split_evenly(blocks: list[nn.Module], num_groups: int = NUM_STAGES) -> list[nn.Sequential]:
    """Split an isotropic stack of L blocks into equal groups; the last group takes the rest.

    12 blocks -> 3/3/3/3; 10 blocks -> 2/2/2/4. Needs at least ``num_groups`` blocks.
    """
    check_enough_blocks(len(blocks), num_groups)
    size = len(blocks) // num_groups
    bounds = [i * size for i in range(num_groups)] + [len(blocks)]
    return [nn.Sequential(*blocks[bounds[i] : bounds[i + 1]]) for i in range(num_groups)]


STAGE_SPLITS = ("even", "ofa")
# OFA-KD's stage boundaries for a 12-block isotropic model (after blocks 1, 3, 9, 11): a small last stage.
OFA_SPLIT_SHARES = (2 / 12, 2 / 12, 6 / 12)


def ofa_split_sizes(num_blocks: int) -> list[int]:
    """Group sizes of OFA-KD's split scaled to ``num_blocks`` (12 -> 2/2/6/2, 6 -> 1/1/3/1), each at least 1."""
    check_enough_blocks(num_blocks)
    sizes = [max(1, round(num_blocks * share)) for share in OFA_SPLIT_SHARES]
    while sum(sizes) > num_blocks - 1:  # the last stage keeps at least one block
        sizes[sizes.index(max(sizes))] -= 1
    return sizes + [num_blocks - sum(sizes)]


def resplit(view: StagedBackbone, split: str) -> StagedBackbone:
    """``view`` with its isotropic blocks regrouped (``"even"``: as built; ``"ofa"``: OFA-KD's boundaries).

    Only isotropic views change: every stage a ``Sequential`` of blocks with the same output layout.
    Hierarchical models keep their resolution stages whatever ``split`` says.
    """
    if split not in STAGE_SPLITS:
        raise ValueError(f"stage_split must be one of {STAGE_SPLITS}, got {split!r}")
    isotropic = len(set(view.stage_infos)) == 1 and all(isinstance(stage, nn.Sequential) for stage in view.stages)
    if split == "even" or not isotropic:
        return view
    blocks = [block for stage in view.stages for block in stage]
    bounds = [0]
    for size in ofa_split_sizes(len(blocks)):
        bounds.append(bounds[-1] + size)
    stages = [nn.Sequential(*blocks[bounds[i] : bounds[i + 1]]) for i in range(NUM_STAGES)]
    return StagedBackbone(
        view.model,
        view.family,
        view.stem,
        stages,
        view.head,
        list(view.stage_infos),
        view.image_size,
        view.runs_on_any_grid,
    )


def as_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))
