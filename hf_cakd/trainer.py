"""DistillationTrainer and DistillationTrainingArguments: transformers' Trainer, plus a teacher.

The student passed as ``model`` is wrapped into a :class:`DistillationModel` together with the
method's trainable parts, so DDP, mixed precision, checkpoints and resume cover all of them. The
teacher is frozen and placed by Accelerate. Saving writes the student as a plain transformers
model at the top of the output directory, loadable without hf_cakd.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import DynamoBackend
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import IterableDataset
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import rotate_checkpoints
from transformers.utils import SAFE_WEIGHTS_NAME

from .backbones import staged_view
from .data.device_views import IMAGES_KEY, DeviceViews
from .data.distillation import SKIPPED_IMAGES_KEY
from .ema import EMA_DIR, EMA_ROW, StudentEMA
from .errors import InputError, NumericalError, Preempted, UsageError
from .methods import METHODS, method_config
from .metrics import accuracy_metrics
from .modeling_distillation import DISTILLATION_CONFIG_NAME, DistillationModel
from .preemption import PreemptionCallback

logger = logging.getLogger(__name__)

# Written last into a checkpoint: a checkpoint without it was interrupted while being written.
CHECKPOINT_COMPLETE_NAME = "checkpoint_complete"
CHECKPOINT_PREFIX = "checkpoint-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(InputError):
    """A save ran out of disk space (or quota); the checkpoints written before it are untouched."""


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the method and its options.

    ``method_config`` holds the chosen method's options as a dict (or a JSON string, or the
    method's config dataclass); unset options take the method's defaults, and the dict is
    completed with them, so ``args.method_config`` always lists every option. From the command
    line each option is a flag of its own (``--kd_temperature 2``); see ``hf_cakd.methods``.
    """

    method: str = field(default="fbt", metadata={"help": "The distillation method.", "choices": sorted(METHODS)})
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
    # Image columns must reach the collator; only the student's labels are labels.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep image columns (needed)."})
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
        self.method_config = method_config(self.method, options).to_dict()
        if self.label_names is None:
            self.label_names = ["labels"]
        if self.model_ema_decay is not None and not 0.0 < self.model_ema_decay < 1.0:
            raise UsageError(f"--model_ema_decay is a decay between 0 and 1 (e.g. 0.9998), got {self.model_ema_decay}.")
        if self.save_ema_as_student and self.model_ema_decay is None:
            raise UsageError("--save_ema_as_student saves the moving average: pass --model_ema_decay too (e.g. 0.9998).")

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


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` whose write finished, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = [
        int(name[len(CHECKPOINT_PREFIX) :])
        for name in os.listdir(output_dir)
        if name.startswith(CHECKPOINT_PREFIX)
        and name[len(CHECKPOINT_PREFIX) :].isdigit()
        and os.path.isfile(os.path.join(output_dir, name, CHECKPOINT_COMPLETE_NAME))
    ]
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{max(steps)}") if steps else None


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _folder_bytes(folder: str) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def _free_bytes(path: str) -> int:
    """Free space on the disk ``path`` is (or would be) on."""
    absolute = Path(path).absolute()
    return shutil.disk_usage(next(p for p in (absolute, *absolute.parents) if p.exists())).free


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


def _saved_student_state(student: PreTrainedModel, checkpoint_dir: str) -> dict[str, torch.Tensor]:
    """The state dict of the student saved in ``checkpoint_dir``, under the live model's parameter names.

    ``save_pretrained`` writes weights in the checkpoint layout transformers publishes, which for
    some models (ViT in transformers 5) differs from the modules' own names, so the file cannot go
    to ``load_state_dict`` as it is. ``from_pretrained`` applies the model's conversion mapping.
    """
    saved, info = type(student).from_pretrained(checkpoint_dir, output_loading_info=True)
    problems = {key: sorted(map(str, info[key])) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        raise InputError(
            f"The student saved in {checkpoint_dir} does not match the model being trained: {problems}. Resume with "
            "the same --student, or pass another --output_dir to start a new run."
        )
    return saved.state_dict()


def _identity(entry):
    """What makes a model the same model for a resume (the spec, its architecture and resolution)."""
    if not isinstance(entry, dict):
        return entry
    return {key: entry.get(key) for key in ("name_or_path", "architecture", "image_size")}


def _brief(entry) -> str:
    if not isinstance(entry, dict):
        return repr(entry)
    return f"{entry.get('name_or_path') or '(built from a config)'} [{entry.get('architecture')}, {entry.get('image_size')}]"


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

    Gradient accumulation: ``compute_loss`` returns the mean loss of its micro-batch and the
    Trainer divides it by the number of accumulation steps (``loss_is_scaled_for_ga = False``), so
    an optimizer step follows the mean of the micro-batch losses. For per-image losses (CE, KD,
    OFA, FitNet) that is the loss of the whole accumulated batch. InfoNCE is not per-image: each
    image is contrasted with the other images of its own micro-batch, so ``k`` micro-batches of
    ``B`` give ``B - 1`` negatives each, not the ``k * B - 1`` of one big batch, and a higher loss.
    Negatives come from the micro-batch (and, with ``gather_negatives``, from the other
    processes' micro-batches), never from earlier accumulation steps.
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
        if isinstance(model, DistillationModel):
            distillation_model = model
        else:
            train_dataset = kwargs.get("train_dataset")
            if device_views is not None:  # the sizes of the views it makes (the dataset yields their source)
                student_size = device_views.student.size
                teacher_size = (device_views.teacher or device_views.student).size
            else:
                student_size = args.student_image_size or _first_example_size(train_dataset, "pixel_values")
                teacher_size = (
                    args.teacher_image_size
                    or _first_example_size(train_dataset, "teacher_pixel_values")
                    or student_size
                )
            distillation_model = DistillationModel.build(
                model, teacher_model, args.method, args.method_config, student_size, teacher_size
            )
        distillation_model.method.label_smoothing = args.label_smoothing_factor
        if teacher_model is not None and not distillation_model.method.requires_teacher:
            logger.info("method=%r trains the student alone; the teacher is only evaluated.", args.method)
        kwargs.setdefault("compute_metrics", accuracy_metrics)
        super().__init__(model=distillation_model, args=args, **kwargs)
        self.teacher_model = teacher_model
        self.teacher_view = None
        if teacher_model is not None:
            self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
            self.teacher_view = distillation_model.teacher_view or staged_view(teacher_model)
            dynamo = self.accelerator.state.dynamo_plugin
            if dynamo.backend != DynamoBackend.NO:
                # Accelerate compiled the teacher module, but the losses call the staged view around the
                # module itself; compiled, that forward takes about a third less time (32 px ResNet, CPU).
                self.teacher_view = torch.compile(self.teacher_view, **dynamo.to_kwargs())
        self._loss_term_sums: dict[str, torch.Tensor] = {}
        self._loss_term_count = 0
        self._skipped_images: dict[str, torch.Tensor | int] = {}
        self.device_views = device_views
        if args.loader_defaults:
            logger.info(
                "DataLoader on %s: %d workers (the cores available to each process, less one for training), "
                "persistent, %s memory; --dataloader_num_workers to choose.",
                args.device.type, args.dataloader_num_workers, "pinned" if args.dataloader_pin_memory else "pageable",
            )
        self.preemption = PreemptionCallback()
        self.add_callback(self.preemption)
        self.ema = StudentEMA(self.student, args.model_ema_decay) if args.model_ema_decay else None
        if self.ema is not None:
            self.add_callback(self.ema)

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    def _teacher_outputs(self, batch: dict):
        """The frozen teacher's staged outputs on its own pixels (the student's when absent)."""
        pixel_values = batch.get("teacher_pixel_values", batch["pixel_values"])
        with torch.no_grad(), self.accelerator.autocast():
            return self.teacher_view(pixel_values)

    def _count_skipped_images(self, inputs: dict) -> None:
        skipped = inputs.pop(SKIPPED_IMAGES_KEY, None)
        if skipped is not None:
            split = "train" if self.model.training else "eval"
            self._skipped_images[split] = self._skipped_images.get(split, 0) + skipped.detach().sum()

    def skipped_images(self) -> dict[str, int]:
        """Images skipped as missing or undecodable (``--skip_bad_images``), summed over workers and processes.

        ``train``: over every training batch of this run (an image skipped in each of 3 epochs
        counts 3 times); ``eval``: in the last evaluation.
        """
        return {
            split: int(self.accelerator.reduce(torch.as_tensor(count, device=self.args.device), reduction="sum"))
            for split, count in sorted(self._skipped_images.items())
        }

    def evaluate(self, *args, **kwargs):
        self._skipped_images.pop("eval", None)
        return super().evaluate(*args, **kwargs)

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
        self._count_skipped_images(inputs)
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
        # Evaluation and prediction run the student alone. Without labels the Trainer calls
        # model(**inputs), which must not receive the teacher's pixels.
        self._make_views(inputs)
        inputs = {key: value for key, value in inputs.items() if key != "teacher_pixel_values"}
        self._count_skipped_images(inputs)
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
        super().log(logs, start_time)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        method = self.accelerator.unwrap_model(model).method
        excluded = {f"method.{name}" for name in method.no_weight_decay_names()}
        return [name for name in super().get_decay_parameter_names(model) if name not in excluded]

    # ---- saving and loading: the student as a plain model, the method's parts beside it ----

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        distillation_model = self.accelerator.unwrap_model(self.model)
        # The Trainer passes the gathered state dict under FSDP/DeepSpeed; each part saves its share of it.
        state_dict = distillation_model.state_dict() if state_dict is None else state_dict
        parts = {"student": {}, "method": {}}
        for key, value in state_dict.items():
            owner, name = key.split(".", 1)
            parts[owner][name] = value
        distillation_model.student.save_pretrained(output_dir, state_dict=parts["student"])
        distillation_model.method.save_parts(output_dir, parts["method"])
        with open(os.path.join(output_dir, DISTILLATION_CONFIG_NAME), "w") as f:
            json.dump(distillation_model.description(), f, indent=2)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        if self.ema is not None:
            self.ema.module.save_pretrained(os.path.join(output_dir, EMA_DIR))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_distillation_state(self, checkpoint_dir: str) -> None:
        distillation_model = self.accelerator.unwrap_model(self.model)
        student_file = os.path.join(checkpoint_dir, SAFE_WEIGHTS_NAME)
        if not os.path.isfile(student_file):
            raise InputError(
                f"{checkpoint_dir} has no {SAFE_WEIGHTS_NAME}: it is not a complete DistillationTrainer checkpoint. "
                "Resume from another checkpoint-* directory or start afresh."
            )
        distillation_model.student.load_state_dict(_saved_student_state(distillation_model.student, checkpoint_dir))
        distillation_model.method.load_parts(checkpoint_dir)
        if self.ema is not None:
            ema_dir = os.path.join(checkpoint_dir, EMA_DIR)
            if not os.path.isfile(os.path.join(ema_dir, SAFE_WEIGHTS_NAME)):
                raise InputError(
                    f"{checkpoint_dir} has no {EMA_DIR}/ (it was written without --model_ema_decay): resume without "
                    "--model_ema_decay, or pass another --output_dir to start a new run with it."
                )
            self.ema.module.load_state_dict(_saved_student_state(self.ema.module, ema_dir))

    def _checkpoint_bytes(self) -> tuple[int, str]:
        """What a checkpoint takes: the newest complete one's size, else the model's and optimizer's tensors."""
        last = last_complete_checkpoint(self.args.output_dir)
        if last is not None:
            return _folder_bytes(last), f"the size of {os.path.basename(last)}"
        tensors = [*self.model.state_dict().values()]
        if self.optimizer is not None:
            tensors += [value for state in self.optimizer.state.values() for value in state.values()]
        size = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
        return size, "the model's and optimizer's tensors"

    @contextlib.contextmanager
    def reporting_a_full_disk(self, target: str, partial: bool = False):
        """Turn a write to ``target`` that failed on a full disk (or quota) into a :class:`DiskFullError`.

        ``partial``: ``target`` is a folder this write creates (a checkpoint), removed when it fails so
        (never resumed from, it only holds space). The message names ``target``, the space left, what
        a checkpoint takes, and the checkpoint that a resume continues from.
        """
        try:
            yield
        except (OSError, RuntimeError, SafetensorError) as err:
            needed, basis = self._checkpoint_bytes()
            # torch.save and safetensors report a failed write as RuntimeError / SafetensorError without an
            # errno: a disk with less space left than a checkpoint takes is what made it fail.
            if not (isinstance(err, OSError) and err.errno in _DISK_FULL) and _free_bytes(target) >= needed:
                raise
            if partial:
                shutil.rmtree(target, ignore_errors=True)
            last = last_complete_checkpoint(self.args.output_dir)
            resume = (
                f"continue from {last}, the last complete checkpoint, which is untouched"
                if last
                else "continue (no checkpoint was complete yet: training starts over)"
            )
            raise DiskFullError(
                f"No space left on the disk of {target}: {_megabytes(_free_bytes(target))} free, and a checkpoint "
                f"takes about {_megabytes(needed)} ({basis}). Free space there (or lower --save_total_limit), then "
                f"run the same command with --resume_from_checkpoint last to {resume}."
            ) from err

    def _save_checkpoint(self, model, trial) -> None:
        # Trainer deletes old checkpoints (save_total_limit) at the end of its save; a process killed
        # between that and our marker would leave no complete checkpoint, so rotate after marking.
        run_dir = self._get_output_dir(trial)
        checkpoint_dir = os.path.join(run_dir, f"{CHECKPOINT_PREFIX}{self.state.global_step}")
        marker_path = os.path.join(checkpoint_dir, CHECKPOINT_COMPLETE_NAME)
        if self.args.should_save and os.path.isfile(marker_path):
            os.remove(marker_path)  # a checkpoint written again is incomplete until marked again
        save_total_limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            with self.reporting_a_full_disk(checkpoint_dir, partial=True):
                super()._save_checkpoint(model, trial)
                self.accelerator.wait_for_everyone()  # the marker says every rank has finished writing
                if self.args.should_save:
                    with open(marker_path, "w") as marker:
                        marker.write(f"step {self.state.global_step}\n")
        finally:
            self.args.save_total_limit = save_total_limit
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``Trainer.train``, resuming only from checkpoints whose write completed.

        ``resume_from_checkpoint=True`` takes the newest complete checkpoint, passing over one a
        killed process left half-written; an explicit incomplete checkpoint is refused.
        """
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise InputError(
                    f"No complete checkpoint in {self.args.output_dir} to resume from: drop --resume_from_checkpoint "
                    "to start afresh."
                )
        elif resume_from_checkpoint and not os.path.isfile(
            os.path.join(resume_from_checkpoint, CHECKPOINT_COMPLETE_NAME)
        ):
            newest = last_complete_checkpoint(os.path.dirname(os.path.abspath(resume_from_checkpoint)))
            raise InputError(
                f"{resume_from_checkpoint} is not a complete checkpoint (missing, or its write was interrupted). "
                + (f"The newest complete one is {newest}." if newest else "No complete checkpoint is beside it.")
            )
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.preemption.stopped_at_step is not None:
            step = self.preemption.stopped_at_step
            raise Preempted(
                f"Stopped by a signal at step {step}; {os.path.join(self.args.output_dir, CHECKPOINT_PREFIX + str(step))} "
                "is complete. Run the same command with --resume_from_checkpoint last to continue."
            )
        return result

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        self._check_same_run(resume_from_checkpoint)
        self._load_distillation_state(resume_from_checkpoint)

    def _check_same_run(self, checkpoint_dir: str) -> None:
        """Refuse to resume a checkpoint written by another method, teacher or student, naming both sides."""
        saved_file = os.path.join(checkpoint_dir, DISTILLATION_CONFIG_NAME)
        if not os.path.isfile(saved_file):
            return
        with open(saved_file) as f:
            saved = json.load(f)
        current = self.accelerator.unwrap_model(self.model).description()
        differences = [
            f"{key}: checkpoint {_brief(saved.get(key))}, this run {_brief(current[key])}"
            for key in ("method", "teacher", "student")
            if _identity(saved.get(key)) != _identity(current[key])
        ]
        if differences:
            raise InputError(
                f"{checkpoint_dir} was written by another run ({'; '.join(differences)}). Resume with the same "
                "--method, --teacher and --student, or pass another --output_dir to start a new run."
            )
        changed = sorted(
            name
            for name, value in current["method_config"].items()
            if saved.get("method_config", {}).get(name, value) != value
        )
        if changed:
            logger.warning("Resuming %s with changed method options: %s", checkpoint_dir, ", ".join(changed))

    def _load_best_model(self) -> None:
        logger.info("Loading the best model from %s", self.state.best_model_checkpoint)
        self._load_distillation_state(self.state.best_model_checkpoint)

    # ---- the teacher and the method's own classifiers ----

    def evaluate_teacher(self, eval_dataset=None, metric_key_prefix: str = "teacher") -> dict[str, float]:
        """Accuracy of the teacher on the eval split (on ``teacher_pixel_values``), to catch a wrong teacher."""
        if self.teacher_model is None:
            raise ValueError("No teacher_model to evaluate.")
        return self._evaluate_logits(lambda batch: {metric_key_prefix: self._teacher_outputs(batch).logits}, eval_dataset)

    def evaluate_method_parts(self, eval_dataset=None) -> dict[str, float]:
        """Accuracy of the method's own classifiers (FBT's assistant ``assistant_top1``, ...); {} when it has none."""
        distillation_model = self.accelerator.unwrap_model(self.model)
        method = distillation_model.method
        was_training = distillation_model.training
        distillation_model.eval()

        def part_logits(batch):
            teacher = self._teacher_outputs(batch) if method.requires_teacher else None
            with torch.no_grad(), self.accelerator.autocast():
                return method.evaluation_logits(distillation_model.student_view(batch["pixel_values"]), teacher)

        try:
            return self._evaluate_logits(part_logits, eval_dataset)
        finally:
            distillation_model.train(was_training)

    def evaluate_ema(self, eval_dataset=None) -> dict[str, float]:
        """Accuracy of the student's moving average (``student_ema_top1``, ...); {} without ``--model_ema_decay``."""
        if self.ema is None:
            return {}

        def ema_logits(batch):
            with torch.no_grad(), self.accelerator.autocast():
                return {EMA_ROW: self.ema.module(pixel_values=batch["pixel_values"]).logits}

        return self._evaluate_logits(ema_logits, eval_dataset)

    def _evaluate_logits(self, logits_of, eval_dataset=None) -> dict[str, float]:
        """Top-1/top-5 of each named classifier ``logits_of(batch)`` returns, over the eval split."""
        all_logits: dict[str, list] = {}
        all_labels = []
        for batch in self.get_eval_dataloader(eval_dataset):
            named = logits_of(batch)
            if not named:
                return {}
            labels = self.accelerator.gather_for_metrics(batch["labels"])
            all_labels.append(labels.cpu())
            for name, logits in named.items():
                all_logits.setdefault(name, []).append(self.accelerator.gather_for_metrics(logits.float()).cpu())
        labels = torch.cat(all_labels).numpy()
        return {
            f"{name}_{metric}": value
            for name, chunks in all_logits.items()
            for metric, value in accuracy_metrics((torch.cat(chunks).numpy(), labels)).items()
        }
