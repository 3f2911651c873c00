"""The accuracy benchmark's pairs, model recipes, profiles and the settings it screens (see run.py's docstring)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import math

import torch
from transformers import MobileNetV2Config, ResNetConfig, TimmWrapperConfig, ViTConfig

from benchmarks.accuracy.teachers.build import TEACHERS, is_built, teacher_dir, weights_digest
from benchmarks.common import TOKEN_NORM, ModelRecipe, Schedule
from hf_cakd import load_classifier, staged_view

TEACHER_METHOD = "none"  # teachers are trained alone, on the labels
PAIRS = {  # pair -> (teacher role, student role)
    "cnn_to_vit": ("cnn_teacher", "vit_student"),
    "vit_to_cnn": ("vit_teacher", "cnn_student"),
    "cnn_to_mlp": ("cnn_teacher", "mlp_student"),
}
# The paper's ablation (one seed, the profile's first): fbt with one part switched off.
ABLATIONS = {
    "without InfoNCE": {"fbt_feature_loss": "infonce", "fbt_infonce_weight": 0.0},  # no feature term, whichever loss
    "without the logit loss": {"fbt_logit_weight": 0.0},
    "without T -> F": {"fbt_transfer_paths": "teacher_student,assistant_student"},
    "without F -> S": {"fbt_transfer_paths": "teacher_student,teacher_assistant"},
}
ABLATED_METHOD = "fbt"
# fbt's settings where the paper's differ from the defaults for a pair (a CNN student of a ViT teacher,
# docs/method.md): fbt's screened settings name them, so that each measures the same thing on every pair.
FBT_PAPER = {
    "fbt_transfer_paths": "teacher_student,teacher_assistant,assistant_student",
    "fbt_deep_supervision": "",
    "fbt_bridge_downsample": 1,
}
# Settings screened on the validation split (the first seed): {method: {setting: method_config}}; {} is the
# method's default, which the table runs.
TUNING = {
    "kd": {"T=2": {"kd_temperature": 2.0}, "T=4": {}, "T=8": {"kd_temperature": 8.0}},
    "ofa": {
        "branches on stages 1-3, weight 1": {},
        "published recipe": {"ofa_stages": "1,2,3,4", "ofa_branch_weight": 0.1},
        "gamma 1.5": {"ofa_gamma": 1.5},
    },
    "fbt": {
        "bridge upsamples": FBT_PAPER | {"fbt_bridge_upsample": "true"},
        "bridge never upsamples": FBT_PAPER | {"fbt_bridge_upsample": "false"},
        "OFA's branches on stages 1-3": FBT_PAPER | {"fbt_deep_supervision": "1,2,3", "fbt_deep_supervision_weight": 1.0},
        # The default and RSD's loss in place of InfoNCE, on the same seeds (fbt's defaults are the paper's on cnn_to_vit).
        "default": {},
        "RSD's loss instead of InfoNCE": {"fbt_feature_loss": "rsd"},
    },
}
# Methods screened on some pairs only (the others: every pair). fbt's screen compares bridges on the pairs whose
# suffix runs on any grid (the ViTs; the default fbt_bridge_upsample "auto" keeps the CNN's 2x2 grid for the ViT
# student, upsamples it for the ViT teacher), which the Mixer's token MLP does not.
TUNING_PAIRS = {"fbt": ("cnn_to_vit", "vit_to_cnn")}
VALIDATION_FRACTION = 10  # the last 1/10 of the train split (CIFAR-10: rows 45,000-49,999) is the validation split
def _resnet(widths: list[int], name: str) -> ModelRecipe:
    config = ResNetConfig(embedding_size=widths[0], hidden_sizes=widths, depths=[2, 2, 2, 2], layer_type="basic")
    return ModelRecipe(name, config, 32)


def _vit(width: int, layers: int, heads: int, mlp_ratio: int, name: str) -> ModelRecipe:
    config = ViTConfig(
        image_size=32,
        patch_size=4,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=mlp_ratio * width,
    )
    return ModelRecipe(name, config, 32, *TOKEN_NORM)


def _mixer(image_size: int, mlp_ratio: tuple[float, float], name: str) -> ModelRecipe:
    config = TimmWrapperConfig(
        architecture="mixer_s16_224", model_args={"img_size": image_size, "mlp_ratio": list(mlp_ratio)}
    )
    return ModelRecipe(name, config, image_size, *TOKEN_NORM)


def _mobilenet_v2(width: float, name: str, image_size: int = 32) -> ModelRecipe:
    # transformers' default classifier dropout (0.8) cost the student alone 2.1 points on the validation
    # screen (benchmarks/accuracy/experiments.md); 0.2 is MobileNetV2's own recipe.
    config = MobileNetV2Config(depth_multiplier=width, image_size=image_size, classifier_dropout_prob=0.2)
    return ModelRecipe(name, config, image_size)


QUICK_MODELS = {
    "cnn_teacher": _resnet([32, 64, 128, 256], "ResNet 2-2-2-2, widths 32-256"),
    "vit_teacher": _vit(128, 6, 4, 2, "ViT patch 4, width 128, 6 layers"),
    "vit_student": _vit(96, 6, 3, 2, "ViT patch 4, width 96, 6 layers"),
    "cnn_student": _mobilenet_v2(0.5, "MobileNetV2 x0.5"),
    "mlp_student": _mixer(64, (0.25, 0.5), "MLP-Mixer S/16, MLP ratios (0.25, 0.5)"),
}


FULL_MODELS = {
    "cnn_teacher": _resnet([64, 128, 256, 512], "ResNet-18 (2-2-2-2, widths 64-512)"),
    "vit_teacher": _vit(384, 12, 6, 4, "ViT-S patch 4 (width 384, 12 layers)"),
    "vit_student": _vit(192, 12, 3, 4, "ViT-Ti patch 4 (width 192, 12 layers)"),
    "cnn_student": _mobilenet_v2(1.0, "MobileNetV2 x1.0"),
    "mlp_student": _mixer(128, (0.5, 2.0), "MLP-Mixer S/16, MLP ratios (0.5, 2.0)"),
}


# The CNN-student direction as the headline call has it (an attention teacher, a CNN student whose stage-3 grid
# is the teacher's token grid: ViT-B/16 and ResNet-18 at 224 px are both 14x14), scaled to a CPU: the committed
# ViT teacher's 4x4 tokens at 64 px, and CNN students at 64 px, whose stage 3 is 4x4 (docs/method.md).
HEADLINE_PAIRS = {"vit_to_resnet": ("vit_teacher", "resnet_student"), "vit_to_mobilenet": ("vit_teacher", "mobilenet_student")}
HEADLINE_MODELS = {
    "vit_teacher": TEACHERS["vit-p16-64"].model,
    "resnet_student": ModelRecipe(
        "ResNet-18 layout (2-2-2-2 basic blocks), widths 4-32",
        ResNetConfig(embedding_size=4, hidden_sizes=[4, 8, 16, 32], depths=[2, 2, 2, 2], layer_type="basic"),
        64,
    ),
    "mobilenet_student": ModelRecipe(
        "MobileNetV2 x0.25, expansion 2, last layer x0.25",
        MobileNetV2Config(
            depth_multiplier=0.25, expand_ratio=2.0, finegrained_output=False, image_size=64, classifier_dropout_prob=0.2
        ),
        64,
    ),
}
HEADLINE_TUNING = {  # fbt's candidates for CNN students, beside the student alone, kd and ofa on the same rows
    "none": {"default": {}},
    "kd": {"default": {}},
    "ofa": {"default": {}},
    # The default (OFA's branches, without F -> S, the bridge downsampling 2x), the paper's settings it replaced,
    # and the candidates screened on top of it. The screen that set the default ran under the teacher's earlier
    # 68.37 % weights; its other settings, and those of options since removed (their rows stay in results.json),
    # are in experiments.md with the commit that ran them.
    "fbt": {
        "default": {},
        "the paper's settings": FBT_PAPER,
        "default, without InfoNCE": {"fbt_infonce_weight": 0.0},
        "default, RSD's loss instead of InfoNCE": {"fbt_feature_loss": "rsd"},
    },
    # RSD as published, and with a logit term beside it (the candidates beyond the paper).
    "rsd": {
        "default": {},
        "with OFA's logit loss": {"rsd_logit_loss": "ofa"},
        "with KD's logit loss": {"rsd_logit_loss": "kd"},
    },
}


@dataclass(frozen=True)
class Profile:
    """One schedule for all runs of a benchmark, its pairs and the settings it screens and ablates."""

    models: dict[str, ModelRecipe]
    train_samples: int | None  # students train on the first N rows of the train split; None: all
    teacher_train_samples: int | None  # teachers likewise
    eval_samples: int | None  # None: the whole test split
    epochs: float
    teacher_epochs: float
    seeds: tuple[int, ...]
    batch_size: int
    # Table seeds added for a pair's method whose top-1 std over ``seeds`` exceeds ``more_seeds_above_std``,
    # once those runs are in: a spread above the gaps between methods needs more runs to say anything.
    more_seeds: tuple[int, ...] = ()
    more_seeds_above_std: float = 0.01
    schedule: Schedule = field(default_factory=Schedule)
    max_steps: int = -1  # > 0: stop every run after this many steps (smoke)
    dataloader_workers: int = 0
    bf16: bool = False  # on CUDA only
    pairs: dict[str, tuple[str, str]] = field(default_factory=lambda: PAIRS)
    tuning: dict[str, dict[str, dict]] = field(default_factory=lambda: TUNING)
    tuning_pairs: dict[str, tuple[str, ...]] = field(default_factory=lambda: TUNING_PAIRS)
    ablations: dict[str, dict] = field(default_factory=lambda: ABLATIONS)
    committed_teachers: dict[str, str] = field(default_factory=dict)  # role -> benchmarks/accuracy/teachers/<name>
    recipe: dict[str, dict] = field(default_factory=dict)  # {"data": DataArguments, "training": TrainingArguments}
    description: str = ""  # one line for ``--profile``'s help

    @property
    def total_steps(self) -> int:
        """Optimizer steps of one student run (CIFAR-10's 50,000 training rows when the profile takes all)."""
        return math.ceil((self.train_samples or CIFAR10_TRAIN_ROWS) / self.batch_size) * math.ceil(self.epochs)

    def teacher_roles(self) -> list[str]:
        return sorted({teacher for teacher, _ in self.pairs.values()})


PROFILES = {
    "smoke": Profile(
        QUICK_MODELS,
        256,
        256,
        128,
        epochs=1,
        teacher_epochs=1,
        seeds=(0,),
        batch_size=32,
        max_steps=2,
        description="tests the script, times quick",
    ),
    "quick": Profile(
        QUICK_MODELS,
        10_000,
        20_000,
        None,
        epochs=5,
        teacher_epochs=8,
        seeds=(0, 1, 2),
        batch_size=128,
        description="2-core CPU, about 5 h, 3 seeds",
    ),
    "full": Profile(
        FULL_MODELS,
        None,
        None,
        None,
        epochs=50,
        teacher_epochs=100,
        seeds=(0, 1, 2),
        batch_size=256,
        dataloader_workers=8,
        bf16=True,
        description="one GPU, 3 seeds",
    ),
}
PROFILES["headline"] = Profile(
    HEADLINE_MODELS,
    45_000,  # every training row but the validation split's
    None,  # the teacher is committed, not trained here
    None,
    epochs=3,
    teacher_epochs=0,
    seeds=(0, 1, 2),
    batch_size=128,
    more_seeds=(3, 4),
    pairs=HEADLINE_PAIRS,
    tuning=HEADLINE_TUNING,
    tuning_pairs={},
    ablations={},
    committed_teachers={"vit_teacher": "vit-p16-64"},
    description="2-core CPU, a ViT teacher -> CNN students at 64 px, 3-5 seeds",
)
ESTIMATED_PROFILE = "quick"  # what the smoke profile times
CIFAR10_TRAIN_ROWS = 50_000

# The recipe for long runs (README, "The recipe for long runs"), as `--recipe` adds it to a profile: timm's
# RandAugment and Mixup/CutMix on the one image both models see, and an EMA of the student.
RECIPE_DATA = {"auto_augment": "rand-m9-mstd0.5-inc1", "mixup_alpha": 0.8, "cutmix_alpha": 1.0}
EMA_HORIZON_SHARE = 0.05
"""The EMA averages over about this share of a run's steps (1 / (1 - decay) steps): DeiT's 0.99996 over its 375k
ImageNet steps is 7%; a fixed ImageNet decay would average a CPU run's few hundred steps from its random start."""


def with_recipe(profile: Profile) -> Profile:
    """``profile`` with the recipe for long runs, its EMA decay scaled to the profile's schedule."""
    decay = round(1 - 1 / max(1.0, EMA_HORIZON_SHARE * profile.total_steps), 4)
    return replace(profile, recipe={"data": dict(RECIPE_DATA), "training": {"model_ema_decay": decay}})


def write_model_dirs(profile: Profile, root: Path) -> dict[str, dict]:
    """Save each role's config-only directory; describe it (parameters, family, input size)."""
    described = {}
    for role, recipe in profile.models.items():
        committed = committed_teacher(profile, role)
        directory = committed or recipe.save(root / role)
        # A committed teacher keeps the labels it was trained on (CIFAR-10's names); a config-only folder gets ten.
        model = load_classifier(str(directory), None if committed else {i: str(i) for i in range(10)})
        described[role] = {
            "name": recipe.name,
            "spec": str(directory),
            "params": sum(p.numel() for p in model.parameters()),
            "family": staged_view(model, recipe.image_size).family,
            "image_size": recipe.image_size,
        }
    return described


def committed_teacher(profile: Profile, role: str) -> Path | None:
    """The committed folder of a role's teacher, or None when the benchmark trains it."""
    name = profile.committed_teachers.get(role)
    if name is None:
        return None
    directory = teacher_dir(name)
    if not is_built(directory):
        raise SystemExit(f"The {role} is the committed teacher {name}, not built yet: python -m benchmarks.accuracy.teachers {name}")
    return directory


def schedule(profile: Profile) -> dict:
    return {
        "train_samples": profile.train_samples,
        "teacher_train_samples": profile.teacher_train_samples,
        "eval_samples": profile.eval_samples,
        "epochs": profile.epochs,
        "teacher_epochs": profile.teacher_epochs,
        "seeds": list(profile.seeds),
        "batch_size": profile.batch_size,
        "max_steps": profile.max_steps,
        **asdict(profile.schedule),
        "bf16": profile.bf16 and torch.cuda.is_available(),
        **({"recipe": profile.recipe} if profile.recipe else {}),  # absent without: earlier records still match
        # A committed teacher retrained makes every run of the record stale: the digest of its weights says which.
        **({"teachers": committed_teacher_digests(profile)} if profile.committed_teachers else {}),
    }


def committed_teacher_digests(profile: Profile) -> dict[str, str]:
    return {role: weights_digest(committed_teacher(profile, role)) for role in sorted(profile.committed_teachers)}
