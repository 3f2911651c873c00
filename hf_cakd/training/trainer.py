"""DistillationTrainer: transformers' Trainer, plus a teacher (its arguments: training_args.py).

The student passed as ``model`` is wrapped into a :class:`DistillationModel` together with the
method's trainable parts, so DDP, mixed precision, checkpoints and resume cover all of them. The
teacher is frozen and placed by Accelerate. Saving writes the student as a plain transformers
model at the top of the output directory, loadable without hf_cakd.
"""

from __future__ import annotations

import logging
import math
import os

import torch
from accelerate.utils import DynamoBackend
from torch import nn
from torch.utils.data import IterableDataset
from transformers import PreTrainedModel, Trainer

from ..backbones import staged_view
from .checkpointing import CHECKPOINT_PREFIX, CheckpointIO, resume_point
from ..data.device_views import IMAGES_KEY, DeviceViews
from .ema import StudentEMA
from ..errors import NumericalError, Preempted
from .metrics import SkippedImageCounts, accuracy_metrics
from ..modeling_distillation import DistillationModel
from .preemption import PreemptionCallback
from .training_args import DistillationTrainingArguments

logger = logging.getLogger(__name__)

def _first_example_size(dataset, key: str) -> tuple[int, int] | None:
    """The resolution of the first example's ``key``, when the dataset yields image tensors."""
    if dataset is None:
        return None
    try:
        example = next(iter(dataset)) if isinstance(dataset, IterableDataset) else dataset[0]
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return None
    value = example.get(key) if isinstance(example, dict) else None
    return tuple(value.shape[-2:]) if isinstance(value, torch.Tensor) else None


class DistillationTrainer(Trainer):
    """A ``Trainer`` that distils ``teacher_model`` into ``model`` (the student).

    Args:
        model: the student, a transformers image classifier (timm models through
            ``TimmWrapperForImageClassification``).
        teacher_model: the frozen teacher; may be omitted for ``method="none"``.
        args: :class:`DistillationTrainingArguments`.
        device_views: a :class:`~hf_cakd.data.DeviceViews` that makes ``pixel_values`` and
            ``teacher_pixel_values`` on the device from training batches' uint8 ``images`` (the
            ``device_views`` of ``DistillationTransform.for_models(..., views_on_device=True)``).
        Everything else as for ``transformers.Trainer``. Batches carry ``pixel_values``
        (student), ``teacher_pixel_values`` (teacher; falls back to ``pixel_values``) and ``labels``,
        or ``images`` and ``labels`` with ``device_views``.

    Gradient accumulation, and why InfoNCE's negatives come from the micro-batch: docs/architecture.md.
    """

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | None = None,
        args=None,
        device_views: DeviceViews | None = None,
        **kwargs,
    ):
        if args is None or not isinstance(args, DistillationTrainingArguments):
            raise TypeError("DistillationTrainer needs args=DistillationTrainingArguments(...).")
        if teacher_model is not None:  # also when given a ready DistillationModel: BatchNorm must not update
            teacher_model.requires_grad_(False).eval()
        distillation_model = _distillation_model(model, teacher_model, args, device_views, kwargs.get("train_dataset"))
        kwargs.setdefault("compute_metrics", accuracy_metrics)
        super().__init__(model=distillation_model, args=args, **kwargs)
        self.teacher_model = teacher_model
        self.teacher_view = None
        if teacher_model is not None:
            self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
            self.teacher_view = _compiled_as_accelerate_compiles(
                distillation_model.teacher_view or staged_view(teacher_model), self.accelerator
            )
        self._loss_term_sums: dict[str, torch.Tensor] = {}
        self._loss_term_count = 0
        self._evaluated_logits = None  # set while evaluate_teacher / evaluate_method_parts run Trainer.predict
        self.device_views = device_views
        if args.loader_defaults:
            logger.info(args.loader_defaults_description())
        self.checkpoint_io = CheckpointIO(self)
        self.skipped, self.preemption = SkippedImageCounts(), PreemptionCallback()
        self.ema = StudentEMA(self.student, args.model_ema_decay) if args.model_ema_decay else None
        for callback in filter(None, (self.skipped, self.preemption, self.ema, self.checkpoint_io)):
            self.add_callback(callback)

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    def _teacher_outputs(self, batch: dict):
        """The frozen teacher's staged outputs on its own pixels (the student's when absent)."""
        pixel_values = batch.get("teacher_pixel_values", batch["pixel_values"])
        with torch.no_grad(), self.accelerator.autocast():
            return self.teacher_view(pixel_values)

    def skipped_images(self) -> dict[str, int]:
        """Images skipped as missing or undecodable, summed over workers and processes (see ``SkippedImageCounts``)."""
        return self.skipped.totals(self.accelerator)

    def _make_views(self, inputs: dict) -> None:
        """Each model's view from a batch's ``images``, on the device the batch is on (see ``device_views``)."""
        if IMAGES_KEY not in inputs:
            return
        if self.device_views is None:
            raise ValueError(
                f"The batch has {IMAGES_KEY!r} (uint8 images from DistillationTransform with device_views) but this "
                "trainer has no device_views: pass DistillationTrainer(..., device_views=transform.device_views)."
            )
        self.device_views(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._make_views(inputs)
        self.skipped.count(inputs, training=model.training)
        teacher_outputs = None
        method = self.accelerator.unwrap_model(model).method
        if model.training:
            method.set_progress(self.state.global_step, self.state.max_steps)  # for the method's schedules
            if method.requires_teacher:
                teacher_outputs = self._teacher_outputs(inputs)
        outputs = model(pixel_values=inputs["pixel_values"], labels=inputs.get("labels"), teacher_outputs=teacher_outputs)
        if "losses" in outputs:
            self._record_loss_terms(outputs["losses"])
        loss = outputs["loss"]
        return (loss, {"loss": loss, "logits": outputs["logits"]}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # The student alone (or the classifiers evaluate_teacher / evaluate_method_parts name). Without
        # labels the Trainer calls model(**inputs), which must not receive the teacher's pixels.
        self._make_views(inputs)
        self.skipped.count(inputs, training=False)
        if self._evaluated_logits is not None:
            return None, self._evaluated_logits(inputs), inputs["labels"]
        inputs = {key: value for key, value in inputs.items() if key != "teacher_pixel_values"}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _record_loss_terms(self, losses: dict[str, torch.Tensor]) -> None:
        values = torch.stack([value.detach().float() for value in losses.values()])
        if not torch.isfinite(values).all():  # one device sync per step, not one per term
            name, value = next((n, v) for n, v in zip(losses, values.tolist()) if not math.isfinite(v))
            raise NumericalError(
                f"The loss term {name!r} is {value} at step {self.state.global_step}. Lower the learning rate, "
                "use bf16 instead of fp16, or check the inputs; the last saved checkpoint is untouched."
            )
        for name, value in zip(losses, values):
            self._loss_term_sums[name] = self._loss_term_sums.get(name, 0.0) + value
        self._loss_term_count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_term_count:
            names = sorted(self._loss_term_sums)
            means = torch.stack([self._loss_term_sums[n] for n in names]) / self._loss_term_count
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({f"loss_{n}": round(v, 4) for n, v in zip(names, means.tolist())})
            logs.update(self.accelerator.unwrap_model(self.model).method.log_values())
            self._loss_term_sums, self._loss_term_count = {}, 0
        if "train_loss" in logs:  # this process's own (the Trainer's): the run's is the mean over processes
            train_loss = torch.tensor(float(logs["train_loss"]), device=self.args.device)
            logs["train_loss"] = self.accelerator.reduce(train_loss, reduction="mean").item()
        super().log(logs, start_time)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        method = self.accelerator.unwrap_model(model).method
        excluded = {f"method.{name}" for name in method.no_weight_decay_names()}
        return [name for name in super().get_decay_parameter_names(model) if name not in excluded]

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``Trainer.train``, resuming only from checkpoints whose write completed (``True``: the newest such)."""
        resume_from_checkpoint = resume_point(resume_from_checkpoint, self.args.output_dir)
        if finished := self.checkpoint_io.restore_finished_run(resume_from_checkpoint):
            return finished
        with self.preemption.restoring_handlers(), self.checkpoint_io.completing_checkpoints():
            result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if (step := self.preemption.stopped_at_step) is not None:
            raise Preempted(
                f"Stopped by a signal at step {step}; {os.path.join(self.args.output_dir, CHECKPOINT_PREFIX + str(step))} "
                "is complete. Run the same command with --resume_from_checkpoint last to continue."
            )
        return result

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The student as a plain transformers model and the method's parts once (``CheckpointIO.save``); a
        checkpoint's write starts here and ends in ``CheckpointIO.on_save`` (docs/architecture.md)."""
        output_dir = output_dir or self.args.output_dir
        if _internal_call and os.path.basename(os.path.normpath(output_dir)) == f"{CHECKPOINT_PREFIX}{self.state.global_step}":
            self.checkpoint_io.begin_checkpoint(output_dir)  # the Trainer's _save_checkpoint
        self.checkpoint_io.save(output_dir, self.accelerator.get_state_dict(self.model_wrapped))
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    # ---- private Trainer methods overridden: why, in docs/architecture.md ("What the trainer overrides") ----

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        self.checkpoint_io.load(resume_from_checkpoint, resuming=True)

    def _load_best_model(self) -> None:
        logger.info("Loading the best model from %s", self.state.best_model_checkpoint)
        self.checkpoint_io.load(self.state.best_model_checkpoint)

    # ---- the teacher and the method's own classifiers, evaluated by Trainer.predict ----

    def evaluate_teacher(self, eval_dataset=None, metric_key_prefix: str = "teacher") -> dict[str, float]:
        """Accuracy of the teacher on the eval split (on ``teacher_pixel_values``), to catch a wrong teacher."""
        if self.teacher_model is None:
            raise ValueError("No teacher_model to evaluate.")
        return self.evaluate_classifiers(
            lambda batch: {metric_key_prefix: self._teacher_outputs(batch).logits.float()}, eval_dataset
        )

    def evaluate_method_parts(self, eval_dataset=None) -> dict[str, float]:
        """Accuracy of the method's own classifiers (FBT's assistant ``assistant_top1``, ...); {} when it has none."""
        distillation_model = self.accelerator.unwrap_model(self.model)
        method = distillation_model.method
        if not method.evaluated_classifiers:
            return {}

        def part_logits(batch):
            teacher = self._teacher_outputs(batch) if method.requires_teacher else None
            with torch.no_grad(), self.accelerator.autocast():
                named = method.evaluation_logits(distillation_model.student_view(batch["pixel_values"]), teacher)
            return {name: logits.float() for name, logits in named.items()}

        return self.evaluate_classifiers(part_logits, eval_dataset)

    def evaluate_classifiers(self, logits_of, eval_dataset=None) -> dict[str, float]:
        """Top-1/top-5 of each named classifier ``logits_of(batch)`` returns, through ``Trainer.predict``."""
        self._evaluated_logits = logits_of
        try:
            metrics = self.predict(self.eval_dataset if eval_dataset is None else eval_dataset, metric_key_prefix="of").metrics
        finally:
            self._evaluated_logits = None
        return {key[len("of_") :]: value for key, value in metrics.items() if key.endswith(("_top1", "_top5"))}


def _distillation_model(model, teacher_model, args, device_views, train_dataset) -> DistillationModel:
    """``model`` when it is a ready ``DistillationModel``, else the student and the method's parts built
    for the input sizes of the views ``device_views`` makes, else the flags', else the first example's."""
    if isinstance(model, DistillationModel):
        distillation_model = model
    else:
        if device_views is not None:  # the sizes of the views it makes (the dataset yields their source)
            student_size = device_views.student.size
            teacher_size = (device_views.teacher or device_views.student).size
        else:
            student_size = args.student_image_size or _first_example_size(train_dataset, "pixel_values")
            teacher_size = (
                args.teacher_image_size or _first_example_size(train_dataset, "teacher_pixel_values") or student_size
            )
        distillation_model = DistillationModel.build(
            model, teacher_model, args.method, args.method_config, student_size, teacher_size
        )
    distillation_model.method.label_smoothing = args.label_smoothing_factor
    if teacher_model is not None and not distillation_model.method.requires_teacher:
        logger.info("method=%r trains the student alone; the teacher is only evaluated.", args.method)
    return distillation_model


def _compiled_as_accelerate_compiles(teacher_view, accelerator):
    """The teacher's staged view, compiled when Accelerate compiles models (``--torch_compile``).

    Accelerate compiled the teacher module, but the losses call the staged view around the module
    itself; compiled, that forward takes about a third less time (32 px ResNet, CPU).
    """
    dynamo = accelerator.state.dynamo_plugin
    return teacher_view if dynamo.backend == DynamoBackend.NO else torch.compile(teacher_view, **dynamo.to_kwargs())
