"""DistillationTrainer semantics: logging, a frozen teacher, evaluation, resume, accumulation, DDP.

A CNN teacher (frozen, eval mode) and a ViT student keep BatchNorm batch statistics out of every
comparison. Batches are in-memory tensors; each run is a handful of steps of tiny models.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import AutoModelForImageClassification, Trainer, TrainerCallback, ViTConfig, ViTImageProcessor

from hf_cakd import DistillationModel, DistillationTrainer, DistillationTrainingArguments
from hf_cakd.data import IMAGES_KEY, DeviceViews, DistillationCollator, ModelInputSpec
from hf_cakd.errors import InputError, UsageError
from hf_cakd.methods import METHOD_STATE_NAME, METHODS, method_class, method_config
from hf_cakd.modeling_distillation import DISTILLATION_CONFIG_NAME
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME, CheckpointIO, check_same_run

ASSISTANT_DIR = "assistant"  # FBT's AssistantModel, saved by its attribute name
from tiny_models import IMAGE_SIZE, NUM_LABELS, build, small_heads

ROOT = Path(__file__).resolve().parents[1]

PAIRS = ("teacher_student", "teacher_assistant", "assistant_student")
# The named loss terms each method logs (as loss_<term>), and the temperatures fbt logs beside them; fbt's are
# InfoNCE's, which INFONCE pins where the tests' pair (a ResNet teacher, a ViT student) would give fbt RSD's loss.
INFONCE = {"fbt_feature_loss": "infonce"}
LOSS_TERMS = {
    "none": {"ce"},
    "kd": {"ce", "kd"},
    "fitnet": {"ce", "fitnet"},
    "feature_kd": {"ce", "feature"},
    "ofa": {"ce", "ofa_stage1", "ofa_stage2", "ofa_stage3", "ofa_stage4"},
    "rsd": {"ce", "rsd"},
    "fbt": {"ce", "ce_assistant", *(f"infonce_{p}" for p in PAIRS), *(f"ofa_{p}" for p in PAIRS)},
}
TEMPERATURES = {"fbt": {f"tau_{p}" for p in PAIRS}}


class ImageBatches(Dataset):
    """Random student and teacher pixels (different, as two processors would give) and labels."""

    def __init__(self, size: int, seed: int = 0, with_labels: bool = True):
        generator = torch.Generator().manual_seed(seed)
        self.pixel_values = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        self.teacher_pixel_values = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        self.labels = torch.randint(0, NUM_LABELS, (size,), generator=generator)
        self.with_labels = with_labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        example = {"pixel_values": self.pixel_values[i], "teacher_pixel_values": self.teacher_pixel_values[i]}
        if self.with_labels:
            example["labels"] = int(self.labels[i])
        return example

    def batch(self, indices) -> dict[str, torch.Tensor]:
        return DistillationCollator()([self[i] for i in indices])


def distillation_args(output_dir, method="fbt", **overrides) -> DistillationTrainingArguments:
    """Training arguments; overrides that are options of ``method`` go to its ``method_config``."""
    option_names = method_class(method).config_class.option_names()
    options = small_heads(method)
    options |= {name: overrides.pop(name) for name in list(overrides) if name in option_names}
    args = dict(
        output_dir=str(output_dir),
        method=method,
        max_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        method_config=options,
        seed=0,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return DistillationTrainingArguments(**{**args, **overrides})


def make_trainer(output_dir, method="fbt", train_size=16, student_seed=2, callbacks=None, eval_dataset=None, **overrides):
    """A trainer on fixed teacher weights; ``student_seed`` also seeds the method's own parts."""
    teacher = build("hf-resnet", seed=1)
    student = build("hf-vit", seed=student_seed)  # also leaves the RNG that initialises the method's parts
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=distillation_args(output_dir, method, **overrides),
        train_dataset=ImageBatches(train_size),
        eval_dataset=eval_dataset,
        data_collator=DistillationCollator(),
        callbacks=callbacks,
    )


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_states_close(actual: dict, expected: dict, atol=1e-6, rtol=1e-5):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def training_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


# ---- 1. every loss term is logged, and the terms add up to the logged loss ----


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_loss_term_is_logged_and_they_sum_to_the_loss(tmp_path, method):
    assert method in LOSS_TERMS, f"a registered method needs its expected loss terms in LOSS_TERMS: {method}"
    trainer = make_trainer(tmp_path, method, **(INFONCE if method == "fbt" else {}))
    trainer.train()
    logs = training_logs(trainer)
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    for entry in logs:
        terms = {key.removeprefix("loss_") for key in entry if key.startswith("loss_")}
        assert terms == LOSS_TERMS[method]
        temperatures = {key for key in entry if key.startswith("tau_")}
        assert temperatures == TEMPERATURES.get(method, set())
        assert all(0.01 <= entry[key] <= 1.0 for key in temperatures)
        # The terms are logged rounded to 4 decimals.
        total = sum(entry[f"loss_{term}"] for term in terms)
        assert total == pytest.approx(entry["loss"], abs=1e-4 * len(terms))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_saves_and_reloads_everything_it_trains(tmp_path, method):
    trainer = make_trainer(tmp_path / "run", method, max_steps=1)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    fresh = make_trainer(tmp_path / "fresh", method, student_seed=7)
    fresh.checkpoint_io.load(str(tmp_path / "saved"))
    assert_states_close(state_of(fresh.model), state_of(trainer.model), atol=0, rtol=0)
    description = json.loads((tmp_path / "saved" / DISTILLATION_CONFIG_NAME).read_text())
    assert description["method"] == method
    resolved = method_config(method, trainer.args.method_config).for_pair(trainer.model.teacher_view, trainer.model.student_view)
    assert description["method_config"] == resolved.to_dict()  # as the run used it: "auto" options set for the pair


# ---- 2. the teacher is frozen; everything else trains; evaluation is the student alone ----


@pytest.mark.parametrize("given", ["student", "distillation_model"])
def test_teacher_stays_frozen_while_student_and_method_parts_train(tmp_path, given):
    teacher = build("hf-resnet", seed=1).train()  # handed over in training mode: the trainer must freeze it
    teacher_before = state_of(teacher)  # buffers too: BatchNorm statistics must not move
    args = distillation_args(tmp_path, "fbt", weight_decay=0.1, **INFONCE)
    model = build("hf-vit", seed=2)
    if given == "distillation_model":
        model = DistillationModel.build(model, teacher, args.method, args.method_config, IMAGE_SIZE, IMAGE_SIZE)
    trainer = DistillationTrainer(
        model=model, teacher_model=teacher, args=args, train_dataset=ImageBatches(16), data_collator=DistillationCollator()
    )
    model = trainer.model
    trainable_before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer.train()

    assert_states_close(state_of(trainer.teacher_model), teacher_before, atol=0, rtol=0)
    assert all(not p.requires_grad and p.grad is None for p in trainer.teacher_model.parameters())
    assert not trainer.teacher_model.training
    assert not any(name.startswith("teacher") for name, _ in model.named_parameters())

    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, trainable_before[name])]
    assert unchanged == []
    parts = ("student.", "method.assistant.bridge.", "method.projectors.", "method.temperatures.")
    assert all(any(name.startswith(part) for name in trainable_before) for part in parts)
    assert set(trainable_before) == {name for name, _ in model.named_parameters()}

    # The optimizer holds exactly the wrapper's parameters; weight decay spares the temperatures.
    groups = trainer.optimizer.param_groups
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    temperatures = [p for name, p in model.named_parameters() if name.endswith("log_tau")]
    assert len(temperatures) == 3 and not decayed & {id(p) for p in temperatures}


def test_evaluate_and_predict_return_the_students_own_logits(tmp_path):
    trainer = make_trainer(tmp_path, "fbt", max_steps=1)
    trainer.train()
    eval_data = ImageBatches(10, seed=5)
    teacher_calls = []
    trainer.teacher_model.register_forward_hook(lambda *_: teacher_calls.append(1))

    metrics = trainer.evaluate(eval_data)
    prediction = trainer.predict(eval_data)

    student = trainer.student.eval()
    with torch.no_grad():
        expected = student(eval_data.pixel_values).logits
    torch.testing.assert_close(torch.as_tensor(prediction.predictions), expected, atol=1e-5, rtol=1e-5)
    expected_loss = F.cross_entropy(expected, eval_data.labels).item()
    assert metrics["eval_loss"] == pytest.approx(expected_loss, abs=1e-4)
    assert prediction.metrics["test_loss"] == pytest.approx(expected_loss, abs=1e-4)
    top1 = (expected.argmax(-1) == eval_data.labels).float().mean().item()
    assert metrics["eval_top1"] == pytest.approx(top1)
    assert teacher_calls == []  # the method's losses, and so the teacher, are training-only

    # Inference on images without labels, through the same DistillationCollator.
    unlabelled = trainer.predict(ImageBatches(10, seed=5, with_labels=False))
    assert unlabelled.label_ids is None
    torch.testing.assert_close(torch.as_tensor(unlabelled.predictions), expected, atol=1e-5, rtol=1e-5)


def test_the_trainer_finds_the_pixels_as_the_main_input(tmp_path):
    """include_for_metrics=["inputs"] and include_num_input_tokens_seen read the model's main_input_name."""
    seen = []
    trainer = make_trainer(
        tmp_path, "kd", max_steps=1, eval_dataset=ImageBatches(10, seed=5), include_for_metrics=["inputs"],
        include_num_input_tokens_seen=True,
    )
    trainer.compute_metrics = lambda prediction: seen.append(prediction.inputs.shape) or {}
    trainer.train()
    trainer.evaluate()
    assert seen == [(10, 3, IMAGE_SIZE, IMAGE_SIZE)]
    assert trainer.state.num_input_tokens_seen == 4 * 3 * IMAGE_SIZE * IMAGE_SIZE  # one batch of 4 images


def test_remove_unused_columns_is_refused(tmp_path):
    """The Trainer would drop teacher_pixel_values, and the teacher would silently get the student's pixels."""
    with pytest.raises(UsageError, match="remove_unused_columns"):
        distillation_args(tmp_path, "kd", remove_unused_columns=True)


def test_the_teacher_and_fbts_assistant_are_evaluated_on_their_own_logits(tmp_path):
    trainer = make_trainer(tmp_path, "fbt", max_steps=1, eval_dataset=ImageBatches(10, seed=5))
    trainer.train()
    data = trainer.eval_dataset
    model = trainer.model.eval()
    with torch.no_grad():
        teacher = trainer.teacher_view(data.teacher_pixel_values)
        assistant = model.method.evaluation_logits(model.student_view(data.pixel_values), teacher)["assistant"]

    def accuracy(name, logits):
        top = logits.topk(5, dim=-1).indices
        return {
            f"{name}_top1": pytest.approx((top[:, 0] == data.labels).float().mean().item()),
            f"{name}_top5": pytest.approx((top == data.labels[:, None]).any(-1).float().mean().item()),
        }

    assert trainer.evaluate_teacher() == accuracy("teacher", teacher.logits)
    assert trainer.evaluate_method_parts() == accuracy("assistant", assistant)
    assert "test_runtime" not in trainer.state.log_history[-1]  # Trainer.predict logs nothing of its own
    assert make_trainer(tmp_path / "kd", "kd", max_steps=1, eval_dataset=data).evaluate_method_parts() == {}


PRIVATE_TRAINER_METHODS = ("_load_from_checkpoint", "_load_best_model")


def test_every_private_trainer_method_overridden_is_documented_and_still_called(tmp_path, monkeypatch):
    """docs/architecture.md lists each private Trainer method DistillationTrainer overrides, with the reason; a
    transformers release that stops calling one (or renames it), or stops starting each checkpoint with save_model
    and ending it with on_save, fails here instead of skipping our save, completion marker or load."""
    overridden = {name for name in vars(DistillationTrainer) if name.startswith("_") and not name.startswith("__")}
    assert overridden & set(dir(Trainer)) == set(PRIVATE_TRAINER_METHODS)
    section = (ROOT / "docs" / "architecture.md").read_text().split("## What the trainer overrides", 1)[1].split("\n## ")[0]
    assert set(re.findall(r"^\| `(_\w+)` \|", section, flags=re.M)) == set(PRIVATE_TRAINER_METHODS)
    assert "save_model(_internal_call=True)" in section
    assert "_internal_call" in inspect.signature(Trainer.save_model).parameters  # distill()'s final save

    calls = []
    spied = [(DistillationTrainer, name) for name in (*PRIVATE_TRAINER_METHODS, "save_model")] + [(CheckpointIO, "on_save")]
    for owner, name in spied:
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda self, *a, _n=name, _f=original, **k: calls.append(_n) or _f(self, *a, **k))
    run = dict(
        method="kd", eval_dataset=ImageBatches(8, seed=5), save_strategy="steps", save_steps=1, eval_strategy="steps",
        eval_steps=1, load_best_model_at_end=True, metric_for_best_model="top1",
    )  # fmt: skip
    make_trainer(tmp_path, max_steps=2, **run).train()
    assert calls == ["save_model", "on_save", "save_model", "on_save", "_load_best_model"]
    assert len(list(tmp_path.glob("checkpoint-*/" + CHECKPOINT_COMPLETE_NAME))) == 2
    calls.clear()
    make_trainer(tmp_path, max_steps=3, **run).train(resume_from_checkpoint=True)
    assert calls[:3] == ["_load_from_checkpoint", "save_model", "on_save"]


def test_device_views_give_the_models_the_views_made_by_hand(tmp_path):
    """A batch of uint8 images trains as the batch of views DeviceViews makes from it (here on the CPU)."""
    student_spec = ModelInputSpec((IMAGE_SIZE, IMAGE_SIZE), IMAGE_SIZE, (0.5,) * 3, (0.5,) * 3)
    teacher_spec = ModelInputSpec((IMAGE_SIZE // 2, IMAGE_SIZE // 2), IMAGE_SIZE // 2, (0.4,) * 3, (0.2,) * 3)
    views = DeviceViews(student_spec, teacher_spec)
    trainer = DistillationTrainer(
        model=build("hf-vit", seed=2), teacher_model=build("hf-resnet", seed=1),
        args=distillation_args(tmp_path, "kd"), device_views=views,
    )
    assert trainer.model.teacher_view.image_size == (IMAGE_SIZE // 2, IMAGE_SIZE // 2)  # the teacher's view's size
    images = torch.randint(0, 256, (4, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    labels = torch.arange(4)
    half_size = F.interpolate(images / 255, IMAGE_SIZE // 2, mode="bilinear", antialias=True)
    by_hand = {"pixel_values": (images / 255 - 0.5) / 0.5, "teacher_pixel_values": (half_size - 0.4) / 0.2, "labels": labels}
    model = trainer.model.train()
    loss = trainer.compute_loss(model, {IMAGES_KEY: images, "labels": labels})
    torch.testing.assert_close(loss, trainer.compute_loss(model, by_hand), atol=1e-5, rtol=1e-5)

    trainer.device_views = None
    with pytest.raises(ValueError, match=r"pass DistillationTrainer\(\.\.\., device_views=transform\.device_views\)"):
        trainer.compute_loss(model, {IMAGES_KEY: images, "labels": labels})


# ---- 3. an interrupted run resumed from its checkpoint ends where an uninterrupted one does ----


class Interrupt(Exception):
    pass


class InterruptAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupt(f"interrupted at step {self.step}")


def test_resuming_another_runs_checkpoint_is_refused_and_changed_options_are_named_with_both_values(tmp_path, caplog):
    saved = {"method": "fbt", "teacher": None, "student": "s", "method_config": {"fbt_bridge_downsample": 1, "fbt_logit_weight": 1.0}}
    (tmp_path / DISTILLATION_CONFIG_NAME).write_text(json.dumps(saved))
    with pytest.raises(InputError, match=r"was written by another run \(method: checkpoint 'fbt', this run 'ofa'\)"):
        check_same_run(str(tmp_path), saved | {"method": "ofa"})
    with caplog.at_level("WARNING", logger="hf_cakd"):
        check_same_run(str(tmp_path), saved | {"method_config": {"fbt_bridge_downsample": 2, "fbt_logit_weight": 1.0}})
    assert "changed method options: fbt_bridge_downsample (checkpoint 1, this run 2). Pass the checkpoint's values" in caplog.text


def test_a_checkpoint_of_an_earlier_version_resumes_with_its_options_under_their_new_names(tmp_path, caplog):
    """distillation_config.json of a version before the options carried their method's prefix: renamed options are
    compared under their new names, removed ones at the behaviour that stayed are dropped, others refuse the resume."""
    current = {"method": "fbt", "teacher": None, "student": "s", "method_config": {
        "fbt_bridge_downsample": 2, "fbt_logit_weight": 0.5, "fbt_bridge_type": "attention"}}  # fmt: skip
    old_options = {"bridge_downsample": 1, "logit_weight": 0.5, "bridge_type": "auto",  # 'auto': resolved for the pair
                   "detach_assistant": True, "own_teacher_suffix": False, "bridge_alignment_weight": 0.0}  # fmt: skip
    (tmp_path / DISTILLATION_CONFIG_NAME).write_text(json.dumps(current | {"method_config": old_options}))
    with caplog.at_level("WARNING", logger="hf_cakd"):
        check_same_run(str(tmp_path), current)
    assert "changed method options: fbt_bridge_downsample (checkpoint 1, this run 2). Pass" in caplog.text
    for removed, value, shown in [("own_teacher_suffix", True, "true"), ("detach_assistant", False, "false"),
                                  ("bridge_alignment_weight", 1.0, "1.0")]:  # fmt: skip
        (tmp_path / DISTILLATION_CONFIG_NAME).write_text(json.dumps(current | {"method_config": old_options | {removed: value}}))
        with pytest.raises(InputError) as refused:
            check_same_run(str(tmp_path), current)
        assert str(refused.value) == (
            f"{tmp_path} was written with --{removed} {shown}, an option that was removed (docs/method.md says why): no "
            "version resumes it; pass another --output_dir to start a new run."
        )


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    # 16 examples in batches of 4: six steps cross an epoch boundary, so the resumed data order
    # (shuffled per epoch) is part of what must match.
    run = dict(max_steps=6, save_strategy="steps", save_steps=3)
    full = make_trainer(tmp_path / "full", **run)
    full.train()
    expected = state_of(full.model)

    interrupted = make_trainer(tmp_path / "resumed", callbacks=[InterruptAtStep(4)], **run)
    with pytest.raises(Interrupt):
        interrupted.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-3"
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["checkpoint-3"]

    # The student is a plain transformers model; the method's parts sit beside it.
    files = {p.name for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", METHOD_STATE_NAME, ASSISTANT_DIR} <= files
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"} <= files
    assert {p.name for p in (checkpoint / ASSISTANT_DIR).iterdir()} >= {"config.json", "model.safetensors"}
    student = AutoModelForImageClassification.from_pretrained(checkpoint)
    assert type(student).__name__ == "ViTForImageClassification"
    # Every weight once: the bridge in assistant/, the rest of the method's parts in the method file.
    method_state = safetensors.torch.load_file(checkpoint / METHOD_STATE_NAME)
    bridge_state = safetensors.torch.load_file(checkpoint / ASSISTANT_DIR / "model.safetensors")
    assert not any(key.startswith("assistant.") for key in method_state)
    assert method_state.keys() | {f"assistant.{key}" for key in bridge_state} == interrupted.model.method.state_dict().keys()
    description = json.loads((checkpoint / DISTILLATION_CONFIG_NAME).read_text())
    assert description["method"] == "fbt" and description["method_config"]["fbt_projector_dim"] == 16
    assert description["student"]["architecture"] == "ViTForImageClassification"
    assert description["teacher"]["family"] == "cnn"

    # A process killed while writing checkpoint-4 leaves it half-written (no completion marker).
    half_written = tmp_path / "resumed" / "checkpoint-4"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes()[:100])
    assert (checkpoint / CHECKPOINT_COMPLETE_NAME).is_file()

    # Another initialisation, so that only what the checkpoint restores can make the runs agree.
    resumed = make_trainer(tmp_path / "resumed", student_seed=7, **run)
    assert not torch.equal(resumed.model.student.classifier.weight, full.model.student.classifier.weight)
    with pytest.raises(InputError, match="not a complete checkpoint.*checkpoint-3"):
        resumed.train(resume_from_checkpoint=str(half_written))
    resumed.train(resume_from_checkpoint=True)  # the newest *complete* checkpoint: checkpoint-3
    assert resumed.state.global_step == 6
    assert_states_close(state_of(resumed.model), expected)
    # The logged history after the checkpoint matches too.
    assert [e["loss"] for e in training_logs(resumed)][-3:] == pytest.approx(
        [e["loss"] for e in training_logs(full)][-3:], abs=1e-5
    )


@pytest.mark.parametrize(
    "student_name, teacher_name", [("hf-resnet", "hf-vit"), ("timm-vit", "hf-resnet"), ("hf-swin", "hf-resnet")]
)
def test_checkpoint_restores_the_student_of_every_family(tmp_path, student_name, teacher_name):
    """Students (BatchNorm buffers, timm wrappers, checkpoint key layouts unlike the module names)
    come back exactly from a checkpoint; resuming at the last step trains nothing more."""

    def trainer_for(student_seed):
        return DistillationTrainer(
            model=build(student_name, seed=student_seed),
            teacher_model=build(teacher_name, seed=1),
            args=distillation_args(tmp_path, "fbt", max_steps=2, save_strategy="steps", save_steps=2),
            train_dataset=ImageBatches(8),
            data_collator=DistillationCollator(),
        )

    trained = trainer_for(2)
    trained.train()
    restored = trainer_for(5)
    restored.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert_states_close(state_of(restored.model), state_of(trained.model), atol=0, rtol=0)


# ---- 4. gradient accumulation ----

SGD_STEP = dict(
    max_steps=1,
    optim="sgd",
    learning_rate=0.5,
    weight_decay=0.0,
    max_grad_norm=0.0,
    lr_scheduler_type="constant",
    train_sampling_strategy="sequential",
)


def one_sgd_step(output_dir, method, batch_size, accumulation, **overrides):
    trainer = make_trainer(
        output_dir,
        method,
        train_size=8,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        **SGD_STEP,
        **overrides,
    )
    initial = copy.deepcopy(trainer.model)
    trainer.train()
    return trainer, initial


@pytest.mark.parametrize(
    "method, overrides",
    [("kd", {}), ("ofa", {}), ("fbt", INFONCE | {"fbt_infonce_weight": 0.0})],
    ids=["kd", "ofa", "fbt-without-infonce"],
)
def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path, method, overrides):
    accumulated, initial = one_sgd_step(tmp_path / "ga", method, 4, 2, **overrides)
    full, initial_full = one_sgd_step(tmp_path / "full", method, 8, 1, **overrides)
    assert_states_close(state_of(initial), state_of(initial_full), atol=0, rtol=0)
    assert not torch.equal(full.model.student.classifier.weight, initial.student.classifier.weight)
    assert_states_close(state_of(accumulated.model), state_of(full.model), atol=2e-6, rtol=1e-5)
    assert training_logs(accumulated)[0]["loss"] == pytest.approx(training_logs(full)[0]["loss"], abs=1e-5)


def test_accumulated_infonce_is_the_mean_of_the_micro_batch_losses(tmp_path):
    """InfoNCE contrasts the images of one batch: a micro-batch of B has B - 1 negatives, a batch
    of 2B has 2B - 1, so accumulation is not the doubled batch. What holds is the scaling: the
    step follows the mean of the micro-batch losses, each divided once by the accumulation steps."""
    trainer, initial = one_sgd_step(tmp_path, "fbt", 4, 2, **INFONCE)
    data = trainer.train_dataset
    micro_batches = [data.batch(range(0, 4)), data.batch(range(4, 8))]

    def loss(model, batch):
        teacher_outputs = trainer._teacher_outputs(batch)
        return model(pixel_values=batch["pixel_values"], labels=batch["labels"], teacher_outputs=teacher_outputs)

    initial.train()
    micro_losses = [loss(initial, batch) for batch in micro_batches]
    mean_loss = sum(out["loss"] for out in micro_losses) / 2
    mean_loss.backward()

    log = training_logs(trainer)[0]
    assert log["loss"] == pytest.approx(mean_loss.item(), abs=1e-5)
    for term in LOSS_TERMS["fbt"]:
        term_mean = sum(out["losses"][term].item() for out in micro_losses) / 2
        assert log[f"loss_{term}"] == pytest.approx(term_mean, abs=1e-4)
    # One SGD step down the gradient of that mean.
    lr = SGD_STEP["learning_rate"]
    for name, p in trainer.model.named_parameters():
        q = dict(initial.named_parameters())[name]
        torch.testing.assert_close(p.detach(), q.detach() - lr * q.grad, atol=2e-6, rtol=1e-5, msg=name)

    # ...which is not the loss of the doubled batch: its InfoNCE terms have more negatives.
    with torch.no_grad():
        full_batch = loss(initial, data.batch(range(8)))["losses"]
    for pair in PAIRS:
        half = sum(out["losses"][f"infonce_{pair}"].item() for out in micro_losses) / 2
        assert full_batch[f"infonce_{pair}"].item() > half + 0.1  # about log(2B) - log(B) more


# ---- 5. several processes: scripts/distill.py under accelerate launch, in sync ----

DDP_WORKER = """
import hashlib, runpy, sys, torch
from hf_cakd import DistillationTrainer

out_dir, argv = sys.argv[1], sys.argv[2:]
trainers, batches = [], []
init, compute_loss = DistillationTrainer.__init__, DistillationTrainer.compute_loss

def record_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    trainers.append(self)

def record_batches(self, model, inputs, *args, **kwargs):
    if model.training:
        images = inputs["images"] if "images" in inputs else inputs["pixel_values"]  # the views' source, or the views
        batches.append(hashlib.sha1(images.numpy().tobytes()).hexdigest())
    return compute_loss(self, model, inputs, *args, **kwargs)

DistillationTrainer.__init__, DistillationTrainer.compute_loss = record_init, record_batches
sys.argv = ["distill.py", *argv]
runpy.run_path("scripts/distill.py", run_name="__main__")
trainer = trainers[-1]
model = trainer.accelerator.unwrap_model(trainer.model)
torch.save(
    {
        "world_size": trainer.accelerator.num_processes,
        "batches": batches,
        "logs": [entry for entry in trainer.state.log_history if "loss" in entry],
        "state": model.state_dict(),
        "ema": trainer.ema.module.state_dict() if trainer.ema is not None else {},
    },
    f"{out_dir}/rank{trainer.accelerator.process_index}.pt",
)
"""


def launch_two_ranks(tmp_path: Path, distill_args: list[str]) -> list[dict]:
    """Run DDP_WORKER (scripts/distill.py recording each rank) in two CPU processes; each rank's record."""
    worker = tmp_path / "ddp_worker.py"
    worker.write_text(DDP_WORKER)
    # `accelerate launch --cpu` starts ONE process unless given an MPI hostfile; `--multi_gpu` starts
    # torchrun's processes, and `--use_cpu` (TrainingArguments) puts each on the CPU with gloo.
    # A config file of our own keeps a developer's default accelerate config out of the test.
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\ngpu_ids: all\n")
    launch = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(config),
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        str(worker), str(tmp_path), *distill_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in range(2)]


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_distill_script_under_accelerate_launch_keeps_processes_in_sync(tmp_path):
    data = tmp_path / "cifar10-tiny"
    data.mkdir()
    for split, rows in (("train", 16), ("test", 8)):
        table = pq.read_table(ROOT / "demo_data" / "cifar10" / f"{split}.parquet")
        pq.write_table(table.slice(0, rows), data / f"{split}.parquet")
    teacher = build("hf-resnet")
    teacher.save_pretrained(tmp_path / "teacher")
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    ViTImageProcessor(size={"height": 32, "width": 32}, **imagenet).save_pretrained(tmp_path / "teacher")
    student = tmp_path / "student"
    vit = dict(image_size=32, patch_size=4, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    ViTConfig(**vit, num_hidden_layers=4).save_pretrained(student)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        student
    )
    output_dir = tmp_path / "out"
    ranks = launch_two_ranks(tmp_path, [
        "--teacher", str(tmp_path / "teacher"), "--student", str(student), "--dataset", str(data),
        "--method", "fbt", "--output_dir", str(output_dir), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--fbt_projector_dim", "16",
        "--fbt_feature_loss", "infonce",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1", "--seed", "0",
        "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
    ])  # fmt: skip
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(len(r["batches"]) == 2 for r in ranks)
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # each process trained on its own shard
    assert_states_close(ranks[1]["state"], ranks[0]["state"], atol=0, rtol=0)
    assert any(key.startswith("method.projectors.") for key in ranks[0]["state"])
    # The loss terms are averaged over processes as the loss is, so they still add up to it.
    for entry in ranks[0]["logs"]:
        terms = [value for key, value in entry.items() if key.startswith("loss_")]
        assert len(terms) == len(LOSS_TERMS["fbt"]) and sum(terms) == pytest.approx(entry["loss"], abs=1e-3)
    assert [entry["loss"] for entry in ranks[1]["logs"]] == [entry["loss"] for entry in ranks[0]["logs"]]

    results = json.loads((output_dir / "results.json").read_text())
    assert results["method"] == "fbt" and math.isfinite(results["train_loss"])
    assert (output_dir / "model.safetensors").is_file() and (output_dir / METHOD_STATE_NAME).is_file()


def test_resuming_a_run_that_reached_max_steps_trains_no_further(tmp_path):
    # A run killed after its last checkpoint (during the final evaluation, say) and run again: the
    # Trainer would take one more step from that checkpoint (transformers 5.25), changing the student.
    # 16 examples in batches of 4: the last step falls inside an epoch.
    run = dict(max_steps=3, save_strategy="steps", save_steps=3, lr_scheduler_type="constant")
    finished = make_trainer(tmp_path / "run", **run)
    finished.train()
    rerun = make_trainer(tmp_path / "run", student_seed=7, **run)
    result = rerun.train(resume_from_checkpoint=True)
    assert rerun.state.global_step == 3 and result.global_step == 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-3"]
    assert_states_close(state_of(rerun.model), state_of(finished.model))


def test_the_final_train_loss_is_averaged_over_processes_not_the_main_ones_own(tmp_path, monkeypatch):
    """The Trainer adds the loss since the last logging step unreduced: under DDP results.json held rank 0's."""
    trainer = make_trainer(tmp_path, method="kd", max_steps=2, logging_steps=50)
    reduced = []

    def reduce(tensor, reduction="sum"):
        reduced.append((tensor.item(), reduction))
        return tensor * 0 + 42.0  # what the other process's loss averages it to

    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: 2))
    monkeypatch.setattr(trainer.accelerator, "reduce", reduce)
    result = trainer.train()
    assert result.metrics["train_loss"] == 42.0 and trainer.state.log_history[-1]["train_loss"] == 42.0
    assert [reduction for _, reduction in reduced][-1] == "mean"
