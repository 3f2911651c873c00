"""Configuration of the FBT assistant (fusion) model."""

from __future__ import annotations

from transformers import PretrainedConfig

ROLES = ("teacher", "student")


def other_role(role: str) -> str:
    """The other model of the pair: the suffix's role for the prefix's, and back."""
    return "student" if role == "teacher" else "teacher"


class AssistantConfig(PretrainedConfig):
    """What the assistant is made of, so it can be rebuilt from the same teacher and student.

    Args:
        prefix_role: which model gives stem + stages 1-3 (``"teacher"`` or ``"student"``); the
            other gives stage 4 + head. The CNN of a CNN/attention-or-MLP pair is the prefix;
            in any other pair the student is.
        prefix_image_size, suffix_image_size: input resolutions the two staged views describe.
        source_stage, target_stage: the bridge's input (prefix stage 3) and output (suffix
            stage-4 input) as ``StageInfo`` fields; checked against the models on rebuild.
        bridge_type: ``"attention"`` (patch embedding + position embedding + one transformer
            block) or ``"linear"`` (projection + norm only).
        bridge_num_heads, bridge_mlp_ratio: the attention block's shape (heads default to
            about one per 64 channels).
        bridge_upsample: ``False`` keeps a source grid smaller than the target's instead of
            upsampling it; needs a suffix view that runs on any grid (ViT, DeiT).
        bridge_downsample: divides the bridged grid by this factor in each direction (2: a 14x14
            grid becomes 7x7); above 1 it needs a suffix view that runs on any grid.
        prefix_model_config, suffix_model_config: full configs of the two models; only used to
            build a standalone assistant that owns copies of every module.
        stage_split: how isotropic models' blocks form their stages (``hf_cakd.backbones.base.resplit``),
            so a rebuilt F has the same suffix stage.
    """

    model_type = "hf_cakd_assistant"

    def __init__(
        self,
        prefix_role: str = "student",
        prefix_image_size: list[int] | None = None,
        suffix_image_size: list[int] | None = None,
        source_stage: dict | None = None,
        target_stage: dict | None = None,
        bridge_type: str = "attention",
        bridge_num_heads: int | None = None,
        bridge_mlp_ratio: float = 2.0,
        bridge_upsample: bool = True,
        bridge_downsample: int = 1,
        prefix_model_config: dict | None = None,
        suffix_model_config: dict | None = None,
        stage_split: str = "even",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if prefix_role not in ROLES:
            raise ValueError(f"prefix_role must be 'teacher' or 'student', got {prefix_role!r}")
        self.prefix_role = prefix_role
        self.prefix_image_size = list(prefix_image_size) if prefix_image_size else None
        self.suffix_image_size = list(suffix_image_size) if suffix_image_size else None
        self.source_stage = source_stage
        self.target_stage = target_stage
        self.bridge_type = bridge_type
        self.bridge_num_heads = bridge_num_heads
        self.bridge_mlp_ratio = bridge_mlp_ratio
        self.bridge_upsample = bridge_upsample
        self.bridge_downsample = bridge_downsample
        self.prefix_model_config = prefix_model_config
        self.suffix_model_config = suffix_model_config
        self.stage_split = stage_split
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def suffix_role(self) -> str:
        return other_role(self.prefix_role)
