"""DistillationTrainer and DistillationTrainingArguments: transformers' Trainer, plus a teacher.

The student passed as ``model`` is wrapped into a :class:`DistillationModel` together with the
method's trainable parts, so DDP, mixed precision, checkpoints and resume cover all of them. The
teacher is frozen and placed by Accelerate. Saving writes the student as a plain transformers
model at the top of the output directory, loadable without hf_cakd.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

import torch
from accelerate.utils import DynamoBackend
from torch import nn
from torch.utils.data import IterableDataset
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.training_args import trainer_log_levels

from .backbones import staged_view
from .checkpointing import CHECKPOINT_PREFIX, CheckpointIO, resume_point
from .data.device_views import IMAGES_KEY, DeviceViews
from .ema import StudentEMA
from .errors import NumericalError, Preempted, UsageError
from .methods import AUTO_METHOD, METHODS, method_config
from .metrics import SkippedImageCounts, accuracy_metrics
from .modeling_distillation import DistillationModel
from .preemption import PreemptionCallback

logger = logging.getLogger(__name__)

@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the method and its options.

    ``method_config`` holds the chosen method's options as a dict (or a JSON string, or the
    method's config dataclass); unset options take the method's defaults, and the dict is
    completed with them, so ``args.method_config`` lists every option (with ``method="auto"``, the options given
    until ``hf_cakd.distill``'s plan knows the student, and with it the method). From the command
    line each option is a flag of its own (``--kd_temperature 2``); see ``hf_cakd.methods``.
    """

    method: str = field(
        default=AUTO_METHOD,
        metadata={
            "help": "The distillation method. 'auto': follows the pair (docs/method.md): the best measured for the "
            "student's family, fbt for attention and MLP students, ofa for CNN students.",
            "choices": [AUTO_METHOD, *sorted(METHODS)],
        },
    )
    method_config: dict | str | None = field(
        default=None,
        metadata={"help": "The method's options as JSON (on the command line, pass them as flags instead)."},
    )
    student_image_size: int | None = field(
        default=None, metadata={"help": "Student input resolution (default: read from the training data)."}
    )
    teacher_image_size: int | None = field(
        default=None, metadata={"help": "Teacher input resolution (default: read from the training data)."}
    )
    model_ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "Keep an exponential moving average of the student with this decay per optimizer step (timm's "
            "ModelEmaV3, e.g. 0.9998): saved in checkpoints (ema/) and evaluated beside the student. Default: none."
        },
    )
    save_ema_as_student: bool = field(
        default=False, metadata={"help": "Save the moving average (--model_ema_decay) as the student."}
    )
    # TrainingArguments' fields whose meaning hf_cakd changes, with their own help (same defaults).
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the student (a plain transformers model), its image processor, model card, results.json and "
            "the checkpoints are written. Required from the command line."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder to resume from, or 'last': the newest complete checkpoint in --output_dir (a new "
            "or empty --output_dir starts afresh, so one command serves the first run and every requeue). A "
            "checkpoint of another method, teacher or student is refused."
        },
    )
    label_smoothing_factor: float = field(
        default=0.0,
        metadata={"help": "Label smoothing of the supervised terms (the student's cross-entropy); 0: none."},
    )
    log_level: str = field(
        default="passive",
        metadata={
            "help": "Level of the main process's log, hf_cakd's and the Trainer's: debug, info, warning, error, critical, "
            "or passive (info: the plan, progress, every loss term and the results).",
            "choices": list(trainer_log_levels),
        },
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={
            "help": "Disable the progress bars, those of loading and saving weights too. Default: disabled when "
            "--log_level is warning or higher."
        },
    )
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Push the student and its card to --hub_model_id at the end (checkpoints as --hub_strategy says); "
            "the method's parts stay local (hf-cakd push --include_distillation_parts)."
        },
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={
            "help": "The Hub repository of --push_to_hub, owner/name. Default: the --output_dir folder's name, under "
            "your account."
        },
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Recompute the student's activations in the backward pass (less memory, about 20% slower); a "
            "transformers student's layers (see the log).",
            "nargs": "?",
            "const": True,
        },
    )
    # Image columns must reach the collator; only the student's labels are labels.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the image and teacher_pixel_values columns are needed."}
    )
    dataloader_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "DataLoader worker processes. Default: 0 on CPU; on an accelerator, one per core available to each "
            "training process, less one for training itself, with persistent workers (and pinned memory, the default)."
        },
    )
    dataloader_pin_memory: bool | None = field(
        default=None,
        metadata={
            "help": "Pin DataLoader memory (default: only when training on an accelerator that supports it).",
            "nargs": "?",
            "const": True,
        },
    )

    def __post_init__(self):
        # Decided before TrainingArguments checks the loader settings; the trainer logs it, once logging is set up.
        on_accelerator = not self.use_cpu and torch.accelerator.is_available()
        self.loader_defaults = self.dataloader_num_workers is None and on_accelerator
        if self.dataloader_num_workers is None:
            self.dataloader_num_workers = accelerator_loader_workers() if self.loader_defaults else 0
            self.dataloader_persistent_workers = self.dataloader_persistent_workers or self.loader_defaults
        super().__post_init__()
        if self.dataloader_pin_memory is None:
            # torch warns on every DataLoader that pins without an accelerator, and MPS cannot pin.
            self.dataloader_pin_memory = on_accelerator and self.device.type != "mps"
        options = self.method_config
        if isinstance(options, str):
            options = json.loads(options)
        # auto's options are completed once the plan knows the student, and with it the method.
        self.method_config = (options or {}) if self.method == AUTO_METHOD else method_config(self.method, options).to_dict()
        if self.label_names is None:
            self.label_names = ["labels"]
        if self.remove_unused_columns:
            # The Trainer would keep only DistillationModel.forward's arguments: the image column the transforms
            # decode, and teacher_pixel_values (the teacher would silently get the student's pixels), would go.
            raise UsageError(
                "--remove_unused_columns True drops the columns distillation reads (the image column the transforms "
                "decode, teacher_pixel_values, images): leave it False, the default of DistillationTrainingArguments."
            )
        if self.model_ema_decay is not None and not 0.0 < self.model_ema_decay < 1.0:
            raise UsageError(f"--model_ema_decay is a decay between 0 and 1 (e.g. 0.9998), got {self.model_ema_decay}.")
        if self.save_ema_as_student and self.model_ema_decay is None:
            raise UsageError("--save_ema_as_student saves the moving average: pass --model_ema_decay too (e.g. 0.9998).")

    def loader_defaults_description(self) -> str:
        return (
            f"DataLoader on {self.device.type}: {self.dataloader_num_workers} workers (the cores available to each "
            "process, less one for training), persistent, "
            f"{'pinned' if self.dataloader_pin_memory else 'pageable'} memory; --dataloader_num_workers to choose."
        )

    def __getstate__(self) -> dict:
        # The Trainer pickles these arguments into training_args.bin at the top of --output_dir and in every
        # checkpoint, and pushes that file with its checkpoints: leave the Hub token out, as to_dict() does.
        # Resume and push read it from --hub_token or HF_TOKEN at run time; a copy made by pickling has none.
        return {key: None if key.endswith("_token") else value for key, value in self.__dict__.items()}


def accelerator_loader_workers() -> int:
    """DataLoader workers per training process on an accelerator: the cores this process may run on (its CPU
    affinity) shared among this machine's training processes (``LOCAL_WORLD_SIZE``), less one for training."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1)


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

    Gradient accumulation, and why InfoNCE's negatives come from the micro-batch: docs/architecture.md, "One
    training step".
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
        for callback in filter(None, (self.skipped, self.preemption, self.ema)):
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
        with self.preemption.restoring_handlers():
            result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if (step := self.preemption.stopped_at_step) is not None:
            raise Preempted(
                f"Stopped by a signal at step {step}; {os.path.join(self.args.output_dir, CHECKPOINT_PREFIX + str(step))} "
                "is complete. Run the same command with --resume_from_checkpoint last to continue."
            )
        return result

    # ---- private Trainer methods overridden: the reason for each is in docs/architecture.md ("What the
    # trainer overrides"), and tests/test_trainer.py fails when the Trainer stops calling one ----

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        self.checkpoint_io.save(output_dir or self.args.output_dir, state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        with self.checkpoint_io.writing_checkpoint(self._get_output_dir(trial), self.state.global_step):
            super()._save_checkpoint(model, trial)

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
