"""The student's moving average (--model_ema_decay, hf_cakd.training.ema): its values, checkpoints, resume, evaluation,
--save_ema_as_student, and the recipe's flags end to end through the command line."""

from __future__ import annotations

import json
import re

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForImageClassification, TrainerCallback

from hf_cakd.cli import distill_main, parse_distill_args
from hf_cakd.training.ema import EMA_DIR, EMA_ROW
from hf_cakd.errors import InputError, UsageError
from test_cli import help_sections
from test_distill_script import distill_args, workspace  # noqa: F401  (workspace: a fixture)
from test_trainer import (
    ROOT,
    ImageBatches,
    Interrupt,
    InterruptAtStep,
    assert_states_close,
    launch_two_ranks,
    make_trainer,
    state_of,
)

DECAY = 0.6


class RecordStudent(TrainerCallback):
    """The student's weights after each optimizer step."""

    def __init__(self):
        self.states = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.states.append(state_of(model.student))


def test_the_average_follows_timms_update_after_every_step(tmp_path):
    recorder = RecordStudent()
    trainer = make_trainer(tmp_path, "kd", callbacks=[recorder], model_ema_decay=DECAY)
    trainer.train()
    expected = recorder.states[0]  # the first update copies the student (timm's step-aware decay)
    for state in recorder.states[1:]:
        expected = {name: DECAY * expected[name] + (1 - DECAY) * state[name] for name in state}
    assert_states_close(state_of(trainer.ema.module), expected, atol=1e-6, rtol=1e-5)
    assert not torch.equal(trainer.ema.module.classifier.weight, trainer.student.classifier.weight)
    top1 = trainer.evaluate_classifiers(trainer.ema.evaluation_logits, ImageBatches(8, seed=3))[f"{EMA_ROW}_top1"]
    assert 0.0 <= top1 <= 1.0


def test_resume_with_the_average_matches_an_uninterrupted_run(tmp_path):
    run = dict(max_steps=6, save_strategy="steps", save_steps=3, model_ema_decay=DECAY)
    full = make_trainer(tmp_path / "full", "kd", **run)
    full.train()
    interrupted = make_trainer(tmp_path / "resumed", "kd", callbacks=[InterruptAtStep(4)], **run)
    with pytest.raises(Interrupt):
        interrupted.train()
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "resumed" / "checkpoint-3" / EMA_DIR)
    assert type(saved).__name__ == "ViTForImageClassification"  # a plain transformers model, like the student
    resumed = make_trainer(tmp_path / "resumed", "kd", student_seed=7, **run)
    resumed.train(resume_from_checkpoint=True)
    assert_states_close(state_of(resumed.ema.module), state_of(full.ema.module))
    assert_states_close(state_of(resumed.model), state_of(full.model))

    without_average = make_trainer(tmp_path / "plain", "kd", max_steps=3, save_strategy="steps", save_steps=3)
    without_average.train()
    asking_for_it = make_trainer(tmp_path / "plain", "kd", max_steps=6, model_ema_decay=DECAY)
    with pytest.raises(InputError, match=f"has no {EMA_DIR}/ .*resume without --model_ema_decay"):
        asking_for_it.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-3"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_ema_decay", "1.5"], "--model_ema_decay is a decay between 0 and 1"),
        (["--save_ema_as_student"], "--save_ema_as_student saves the moving average: pass --model_ema_decay"),
    ],
)
def test_the_average_flags_refuse_what_cannot_work(workspace, tmp_path, flags, message):  # noqa: F811
    with pytest.raises(UsageError, match=message):
        distill_main(distill_args(workspace, "kd", tmp_path / "out", *flags))


def test_the_recipes_flags_are_data_and_training_flags_in_help_all(capsys):
    sections = help_sections(capsys, help_flag="--help_all")
    data = sections["data"]
    for flag in ("auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob"):
        assert f"--{flag}" in data
    training = next(text for title, text in sections.items() if title.startswith("training"))
    assert "--model_ema_decay" in training and "--save_ema_as_student" in training


def test_the_recipe_pages_flags_are_valid():
    page = (ROOT / "docs" / "recipe.md").read_text()
    block = re.search(r"```bash\n(.*?)```", page, re.S).group(1)
    flags = block.replace("\\\n", " ").split()
    _, data_args, training_args = parse_distill_args(["--teacher", "t", "--dataset", "d", "--output_dir", "o", *flags])
    assert data_args.augmentation(num_classes=10).active and training_args.save_ema_as_student


RECIPE = [
    "--auto_augment", "rand-m9-mstd0.5-inc1", "--color_jitter", "0.3", "--random_erasing", "0.5",
    "--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--label_smoothing_factor", "0.1", "--model_ema_decay", "0.9",
]  # fmt: skip


@pytest.mark.parametrize("method", ["kd", "fbt"])
def test_a_run_with_the_recipe_reports_and_saves_the_average(workspace, tmp_path, method):  # noqa: F811
    output_dir = tmp_path / method
    extra = ["--save_ema_as_student"] if method == "kd" else []
    results = distill_main(distill_args(workspace, method, output_dir, *RECIPE, *extra))
    assert set(results["metrics"]) >= {"student", EMA_ROW, "teacher"}
    assert results["recipe"]["mixup_alpha"] == 0.8 and results["recipe"]["model_ema_decay"] == 0.9
    saved = safetensors.torch.load_file(output_dir / "model.safetensors")
    average = safetensors.torch.load_file(output_dir / EMA_DIR / "model.safetensors")
    card = (output_dir / "README.md").read_text()
    assert f"| {EMA_ROW} |" in card
    if method == "kd":  # --save_ema_as_student: the model at the top is the average
        assert results["recipe"]["saved_student"] == EMA_ROW and "these are the weights saved here" in card
        assert all(torch.equal(saved[name], average[name]) for name in saved)
        top1 = round(results["metrics"][EMA_ROW]["top1"], 4)
        assert f"value: {top1}" in card  # the model index reports the saved weights
    else:
        assert results["recipe"]["saved_student"] == "student"
        assert not all(torch.equal(saved[name], average[name]) for name in saved)


@pytest.mark.slow  # two processes under accelerate launch, about a minute on a 2-core CPU
def test_under_ddp_every_process_keeps_the_same_average(tmp_path, workspace):  # noqa: F811
    output_dir = tmp_path / "out"
    args = distill_args(workspace, "kd", output_dir, *RECIPE, "--per_device_train_batch_size", "4")
    ranks = launch_two_ranks(tmp_path, args)
    assert [r["world_size"] for r in ranks] == [2, 2]
    averages = [rank["ema"] for rank in ranks]
    assert averages[0] and not any(torch.equal(averages[0][n], ranks[0]["state"][f"student.{n}"]) for n in averages[0] if "weight" in n)
    assert_states_close(averages[1], averages[0], atol=0, rtol=0)
    saved = AutoModelForImageClassification.from_pretrained(output_dir / EMA_DIR)
    assert_states_close(state_of(saved), averages[0], atol=0, rtol=0)
    assert EMA_ROW in json.loads((output_dir / "results.json").read_text())["metrics"]
