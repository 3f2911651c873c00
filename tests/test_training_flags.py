"""TrainingArguments flags that a distillation must honour: each works, or is refused with a reason."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_cakd.cli import distill_main
from hf_cakd.data import DistillationCollator
from hf_cakd.errors import UsageError
from hf_cakd.training.trainer import DistillationTrainer
from test_distill_script import distill_args, workspace  # noqa: F401  (workspace: a fixture)
from test_trainer import ImageBatches, distillation_args, make_trainer, state_of
from tiny_models import build


def test_label_smoothing_applies_to_the_supervised_term(tmp_path):
    trainer = make_trainer(tmp_path, "kd", label_smoothing_factor=0.2)
    model = trainer.model.train()
    batch = ImageBatches(8).batch(range(8))
    teacher = trainer.teacher_view(batch["teacher_pixel_values"])
    losses = model(batch["pixel_values"], batch["labels"], teacher)["losses"]
    logits = model.student_view(batch["pixel_values"]).logits
    expected = F.cross_entropy(logits, batch["labels"], label_smoothing=0.2)
    assert losses["ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["ce"].item() != pytest.approx(F.cross_entropy(logits, batch["labels"]).item(), rel=1e-3)


def test_activation_checkpointing_reaches_the_students_layers_and_changes_no_number(tmp_path):
    plain = make_trainer(tmp_path / "plain", "kd", max_steps=2)
    plain.train()
    checkpointed = make_trainer(tmp_path / "checkpointed", "kd", max_steps=2, activation_checkpointing=True)
    checkpointed.train()
    layers = [m for m in checkpointed.model.student.modules() if getattr(m, "gradient_checkpointing", None) is True]
    assert layers  # every ViT layer recomputes its activations in the backward pass
    after, expected = state_of(checkpointed.model), state_of(plain.model)
    for name in expected:
        torch.testing.assert_close(after[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_activation_checkpointing_is_refused_for_a_timm_student(tmp_path):
    trainer = DistillationTrainer(
        model=build("timm-vit"),
        teacher_model=build("hf-resnet"),
        args=distillation_args(tmp_path, "kd", activation_checkpointing=True),
        train_dataset=ImageBatches(8),
        data_collator=DistillationCollator(),
    )
    with pytest.raises(UsageError, match="--activation_checkpointing does not reach"):
        trainer.train()


def test_log_level_governs_hf_cakds_loggers(workspace, tmp_path):  # noqa: F811
    distill_main(distill_args(workspace, "kd", tmp_path / "out", "--log_level", "warning"))
    assert logging.getLogger("hf_cakd").getEffectiveLevel() == logging.WARNING
    distill_main(distill_args(workspace, "kd", tmp_path / "out2", "--log_level", "debug"))
    assert logging.getLogger("hf_cakd").getEffectiveLevel() == logging.DEBUG



def test_a_hub_warning_is_printed_once_and_a_dataset_card_without_metadata_not_at_all(tmp_path):
    shutil.copytree(Path(__file__).resolve().parents[1] / "demo_data" / "cifar10", tmp_path / "data")
    (tmp_path / "data" / "README.md").write_text("# My photos\n")  # a dataset card with no metadata block
    script = (
        "from hf_cakd.cli import setup_logging; from hf_cakd.data import load_image_dataset; import huggingface_hub\n"
        f"setup_logging(); load_image_dataset({str(tmp_path / 'data')!r})\n"
        "huggingface_hub.utils.logging.get_logger('huggingface_hub.file_download').warning('a hub warning')\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err.count("a hub warning") == 1 and "metadata block" not in err
    assert "WARNING huggingface_hub.file_download: a hub warning" in err  # formatted as the run's other lines


@pytest.mark.slow  # compiling takes a minute or more on a 2-core CPU; CI runs it (.ci/run)
def test_torch_compile_compiles_the_distillation_model_and_the_teacher_and_changes_no_number(tmp_path):
    plain = make_trainer(tmp_path / "plain", "kd", max_steps=2)
    plain.train()
    compiled = make_trainer(tmp_path / "compiled", "kd", max_steps=2, torch_compile=True)
    compiled.train()
    assert type(compiled.model_wrapped).__name__ == "OptimizedModule"  # student and method parts, compiled
    assert type(compiled.teacher_view).__name__ == "OptimizedModule" and compiled.teacher_view.family == "cnn"
    losses = [entry["loss"] for entry in compiled.state.log_history if "loss" in entry]
    expected = [entry["loss"] for entry in plain.state.log_history if "loss" in entry]
    assert losses == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "accelerator, flags, expected",
    [
        (True, {}, (7, True, True)),  # 16 cores shared by 2 processes, one core each left for training
        (True, {"dataloader_num_workers": 2}, (2, False, True)),  # given: kept as it is
        (True, {"use_cpu": True}, (0, False, False)),
        (False, {}, (0, False, False)),  # the CPU default: no pinning, which torch warns about without an accelerator
    ],
)
def test_loader_defaults_on_an_accelerator(tmp_path, monkeypatch, caplog, accelerator, flags, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: accelerator)
    args = distillation_args(tmp_path, "kd", **{"use_cpu": False, "dataloader_num_workers": None, **flags})
    assert (args.dataloader_num_workers, args.dataloader_persistent_workers, args.dataloader_pin_memory) == expected
    with caplog.at_level(logging.INFO, logger="hf_cakd.training.trainer"):
        make_trainer(tmp_path, "kd", **{"use_cpu": False, "dataloader_num_workers": None, **flags})
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("DataLoader on ")]
    defaults = accelerator and not flags
    assert logged == (["DataLoader on cpu: 7 workers (the cores available to each process, less one for training), "
                       "persistent, pinned memory; --dataloader_num_workers to choose."] if defaults else [])
