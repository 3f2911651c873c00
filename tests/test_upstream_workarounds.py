"""Canaries for the upstream bugs hf_cakd patches (docs/architecture.md, "Upstream workarounds").

Each test reproduces a bug by calling the upstream library directly, without hf_cakd's patch, and
asserts the bug is still there: once upstream fixes it, the test fails and says which patch to remove.
"""

from __future__ import annotations

import logging

import datasets
import PIL.Image
import pytest
import torch
from timm.data.auto_augment import auto_augment_transform, rand_augment_transform
from torch import nn
from transformers import AutoModelForImageClassification, Trainer, TimmWrapperConfig, TrainingArguments

from hf_cakd.cli import _not_a_card_without_metadata


def fixed(bug: str, patch: str) -> str:
    return f"upstream fixed {bug}: remove {patch} (docs/architecture.md, Upstream workarounds)"


def test_timm_wrapper_from_config_still_redraws_timms_initialisation():
    config = TimmWrapperConfig(architecture="resnet18", model_args={"layers": [1, 1, 1, 1]}, num_labels=10)
    resnet = AutoModelForImageClassification.from_config(config).timm_model
    zero_init_lost = bool((resnet.layer1[0].bn2.weight == 1).all())  # timm starts each block's last norm at 0
    redrawn = abs(resnet.conv1.weight.std().item() - 0.02) < 0.001  # N(0, 0.02), not timm's He init (0.025)
    assert zero_init_lost or redrawn, fixed(
        "TimmWrapper's from_config redrawing the timm model's weights", "model_specs._restore_timm_init"
    )


@pytest.mark.parametrize(
    "policy, make", [("rand-m10-n1-mstd0-inc1", rand_augment_transform), ("v0", auto_augment_transform)]
)
def test_timm_posterize_at_its_strongest_still_fails_in_pillow(policy, make):
    transform = make(policy, {"translate_const": 10, "img_mean": (128, 128, 128)})
    ops = getattr(transform, "ops", None) or [op for sub_policy in transform.policy for op in sub_policy]
    zero_bits = [op for op in ops if op.name.startswith("Posterize") and op.level_fn(op.magnitude, op.hparams) == (0,)]
    assert zero_bits, fixed("timm's posterize asking for 0 bits", "augment._keep_a_bit_when_posterizing")
    zero_bits[0].prob = 1.0
    try:
        zero_bits[0](PIL.Image.new("RGB", (4, 4)))
    except ValueError:
        return
    pytest.fail(fixed("Pillow refusing timm's posterize to 0 bits", "augment._keep_a_bit_when_posterizing"))


class _Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, labels):
        return {"loss": (self.linear(x).squeeze(-1) - labels).pow(2).mean()}


def test_trainer_still_takes_a_step_more_when_resuming_a_finished_run(tmp_path):
    rows = [{"x": torch.randn(2), "labels": torch.tensor(1.0)} for _ in range(8)]
    args = TrainingArguments(
        str(tmp_path), max_steps=2, save_strategy="steps", save_steps=2, per_device_train_batch_size=2, report_to=[],
        use_cpu=True, disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    Trainer(model=_Regression(), args=args, train_dataset=rows).train()
    resumed = Trainer(model=_Regression(), args=args, train_dataset=rows)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.state.global_step == 3, fixed(
        "Trainer.train taking one step more when resuming a checkpoint at max_steps",
        "checkpointing.finished_run and CheckpointIO.restore_finished_run",
    )


def test_datasets_still_logs_a_card_warning_for_a_local_readme_without_metadata(tmp_path):
    datasets.Dataset.from_dict({"label": [0, 1]}).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "README.md").write_text("# My data\n")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    card_logger = logging.getLogger("huggingface_hub.repocard")
    filters, level = card_logger.filters, card_logger.level
    card_logger.filters = []  # setup_logging (run by other tests) adds our filter here: the canary runs without it
    card_logger.setLevel(logging.WARNING)
    card_logger.addHandler(handler)
    try:
        datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    finally:
        card_logger.removeHandler(handler)
        card_logger.filters = filters
        card_logger.setLevel(level)
    warnings = [record for record in records if record.levelno == logging.WARNING]
    assert warnings, fixed("datasets logging a card warning for a local README.md", "cli._not_a_card_without_metadata")
    # The filter tells the warning by its text (a log record has no type).
    assert not all(map(_not_a_card_without_metadata, warnings)), (
        f"huggingface_hub reworded its warning ({warnings[0].getMessage()!r}): update cli._not_a_card_without_metadata"
    )
