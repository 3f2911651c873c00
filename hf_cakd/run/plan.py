"""The run plan: what one ``hf_cakd.distill`` call will do, resolved from its arguments before training.

:func:`plan_run` checks the arguments and resolves the dataset (and its splits and columns), each
model's spec and timm arguments, each input resolution and where it comes from, the teacher's
label mapping and the default student into a frozen :class:`RunPlan`, without changing the
arguments it was given. It reads what those depend on: the teacher's config and card (the
default dataset), the dataset's labels (the teacher's label space is checked before any image
downloads), the dataset itself (the resolution of a model built for the data) and the teacher
(its family chooses the default student); it loads both models. The log, ``results.json`` (``"plan"``) and the card
describe the run from the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from timm.models import get_pretrained_cfg
from transformers import PreTrainedModel, set_seed
from transformers.trainer_utils import HubStrategy

from ..backbones import staged_view
from ..training.checkpointing import resume_point
from ..data import ImageClassificationData, load_image_dataset
from ..data.augment import AUGMENTATION_FLAGS, Augmentation
from .defaults import default_dataset, default_dataset_warning, dataset_labels, default_student, default_student_name
from ..training.ema import EMA_ROW
from ..errors import InputError, UsageError
from ..hub_errors import check_reachable
from ..model_specs import TIMM_PREFIX, load_classifier, load_config, missing_weights, refuse_folder_without_config
from ..training.training_args import DistillationTrainingArguments

logger = logging.getLogger(__name__)

FROM_THE_DATA = "the data (built from scratch)"


@dataclass(frozen=True)
class ModelPlan:
    """One model of the run: its spec, its ``timm.create_model`` arguments and its input resolution.

    ``image_size`` is None when the model's own preprocessing decides it (its image processor, timm
    data config or model config, named once it is loaded); ``image_size_source`` says otherwise
    where it came from (the ``--<role>_image_size`` flag, or the data for a model built for it).
    """

    spec: str
    model_args: dict | None = None
    image_size: int | None = None
    image_size_source: str | None = None
    default_student_size: int | None = None  # the resolution the default student is built for; None: given
    from_scratch: bool = False  # built with random weights (a config, timm:<name>, the default student)

    @property
    def is_default_student(self) -> bool:
        return self.default_student_size is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunPlan:
    """One distillation run as resolved by :func:`plan_run` (frozen: nothing downstream changes it)."""

    method: str
    dataset: str
    dataset_source: str  # "--dataset", or "the teacher's model card"
    dataset_config: str | None
    train_split: str
    eval_split: str | None
    student: ModelPlan
    teacher: ModelPlan | None
    label_mapping: dict | str | None
    output_dir: str
    resume_from_checkpoint: str | None  # the checkpoint resumed from (`last` resolved), None: start afresh
    push_to_hub: bool  # the final student and its card, pushed by hub.push_student at the end
    max_train_samples: int | None
    max_eval_samples: int | None
    skip_bad_images: bool
    streaming: bool
    license: str | None
    ignore_mismatched_sizes: bool
    augmentation: Augmentation  # the training images' (off by default), its mixed targets sized for the data
    # Read while planning, handed on rather than read twice.
    data: ImageClassificationData = field(repr=False, compare=False)
    teacher_model: PreTrainedModel | None = field(repr=False, compare=False)
    student_model: PreTrainedModel = field(repr=False, compare=False)
    training_args: DistillationTrainingArguments = field(repr=False, compare=False)

    def train_rows(self):
        """The training split, its first ``--max_train_samples`` rows when given."""
        return _first_rows(self.data.train, self.max_train_samples)

    def eval_rows(self):
        """The eval split (None without one), its first ``--max_eval_samples`` rows when given."""
        return _first_rows(self.data.eval, self.max_eval_samples)

    def recipe(self) -> dict:
        """The long-run recipe's settings as given (``results.json``'s ``"recipe"``)."""
        augmentation = {name: getattr(self.augmentation, name) for name in AUGMENTATION_FLAGS}
        ema = self.training_args.model_ema_decay
        saved = EMA_ROW if self.training_args.save_ema_as_student else "student"
        smoothing = self.training_args.label_smoothing_factor
        return {**augmentation, "label_smoothing_factor": smoothing, "model_ema_decay": ema, "saved_student": saved}

    def to_dict(self) -> dict:
        """The plan in JSON terms (``results.json``'s ``"plan"``)."""
        return {
            "method": self.method,
            "dataset": self.dataset,
            "dataset_source": self.dataset_source,
            "dataset_config": self.dataset_config,
            "train_split": self.train_split,
            "eval_split": self.eval_split,
            "image_column": self.data.image_column,
            "label_column": self.data.label_column,
            "num_labels": len(self.data.id2label),
            "student": self.student.to_dict(),
            "teacher": None if self.teacher is None else self.teacher.to_dict(),
            "teacher_label_mapping": self.label_mapping,
            "output_dir": self.output_dir,
            "resume_from_checkpoint": self.resume_from_checkpoint,
            "push_to_hub": self.push_to_hub,
        }

    def log(self) -> None:
        def described(model: ModelPlan | None) -> str:
            if model is None:
                return "none"
            size = model.image_size or model.default_student_size
            resolution = f", {size} px from {model.image_size_source}" if size else ""
            return f"{model.spec}{' (default student)' if model.is_default_student else ''}{resolution}"

        logger.info(
            "Plan: --method %s, teacher %s, student %s, --dataset %s (from %s; %s, %s), --output_dir %s%s",
            self.method, described(self.teacher), described(self.student), self.dataset, self.dataset_source,
            split_size(self.train_rows(), "train"), split_size(self.eval_rows(), "eval"),
            self.output_dir,
            f", resuming from {self.resume_from_checkpoint}" if self.resume_from_checkpoint else "",
        )  # fmt: skip


def plan_run(model_args, data_args, training_args: DistillationTrainingArguments) -> RunPlan:
    """Check the arguments and resolve the run they describe (see the module's docstring); logs the plan once."""
    _check_arguments(model_args, data_args, training_args)
    _check_sources(model_args, data_args)
    # `last` resolved before anything loads: a non-empty folder without a complete checkpoint stops here
    resume_from_checkpoint = resume_point(_resume_point(training_args.resume_from_checkpoint), training_args.output_dir)
    set_seed(training_args.seed)  # a student built from a config starts from the run's seed
    dataset, dataset_source = data_args.dataset, "--dataset"
    if not dataset:
        num_labels = load_config(model_args.teacher, role="teacher").num_labels
        dataset, dataset_source = default_dataset(model_args.teacher, num_labels), "the teacher's model card"
        logger.warning(default_dataset_warning(dataset, model_args.teacher, num_labels))
    teacher_model, data = _load_teacher_and_data(model_args, data_args, training_args, dataset)
    teacher = _model_plan("teacher", model_args.teacher, None, training_args, data) if model_args.teacher else None
    if teacher is not None and teacher_model is None:
        teacher_model = _load_teacher(teacher.spec, model_args.teacher_label_mapping, data.id2label)
    if model_args.student:
        student = _model_plan("student", model_args.student, model_args.student_model_args, training_args, data)
    else:
        requested = training_args.student_image_size
        student = ModelPlan(
            spec=default_student_name(staged_view(teacher_model).family),
            image_size=requested,
            image_size_source="--student_image_size" if requested else FROM_THE_DATA,
            default_student_size=requested or data.first_image_side,
            from_scratch=True,
        )
    student_model = _load_student(student, teacher_model, data.id2label, model_args.ignore_mismatched_sizes)
    plan = RunPlan(
        method=training_args.method, dataset=dataset, dataset_source=dataset_source,
        dataset_config=data_args.dataset_config, train_split=data_args.train_split, eval_split=data.eval_split,
        student=student, teacher=teacher, label_mapping=model_args.teacher_label_mapping,
        output_dir=training_args.output_dir,
        resume_from_checkpoint=resume_from_checkpoint,
        push_to_hub=training_args.push_to_hub, max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples, skip_bad_images=data_args.skip_bad_images,
        streaming=data_args.streaming, license=model_args.license,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        augmentation=data_args.augmentation(data.num_labels, training_args.label_smoothing_factor),
        data=data, teacher_model=teacher_model, student_model=student_model,
        training_args=_trainer_arguments(training_args, student, teacher),
    )  # fmt: skip
    plan.log()
    return plan


def _first_rows(split, limit):
    if split is None or limit is None:
        return split
    if isinstance(split, datasets.IterableDataset):
        first = split.take(limit)
        if first.num_shards == 1:
            return first
        # take() shares the N rows out among DataLoader workers, each taking its share from the files it reads:
        # fewer than N where a worker's files hold less than its share, and not the first N. One source reads
        # the first N exactly (and one worker decodes them).
        return datasets.IterableDataset.from_generator(
            _rows_of, gen_kwargs={"stream": first.decode(False)}, features=split.features, split=split.split
        )
    return split.select(range(min(limit, len(split))))


def _rows_of(stream):
    """The rows of ``stream`` (undecoded), read whole even in a DataLoader worker (``iter`` does not shard it)."""
    for batch in stream.iter(batch_size=64):
        yield from (dict(zip(batch, row)) for row in zip(*batch.values()))


def split_size(split, kind: str) -> str:
    """A split's size for the log (``kind``: train, eval); a stream's is unknown without reading it."""
    if split is None:
        return f"no {kind} split"
    if isinstance(split, datasets.IterableDataset):
        return f"the streamed {kind} images"
    return f"{len(split)} {kind} images"


def _check_arguments(model_args, data_args, training_args) -> None:
    if training_args.method != "none" and not model_args.teacher:
        raise UsageError(
            f"--method {training_args.method} distils from a teacher: pass --teacher (or --method none to train the "
            "student alone)."
        )
    if not (model_args.student or model_args.teacher):
        raise UsageError("Pass --student (or --teacher alone: a student of another family is then chosen for it).")
    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError(
            "--streaming needs --max_steps: a stream has no length to count epochs by. Pass --max_steps N "
            "(the number of optimizer steps), or drop --streaming."
        )
    for flag in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        if getattr(training_args, flag) < 1:
            raise UsageError(f"--{flag} {getattr(training_args, flag)}: pass a positive batch size.")
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise UsageError(
            f"--num_train_epochs {training_args.num_train_epochs} trains no step: pass a positive --num_train_epochs, "
            "or --max_steps N."
        )
    _check_output_dir(training_args, data_args)


def _check_sources(model_args, data_args) -> None:
    """Stop on a model or data set that cannot be had, before anything loads: a teacher without trained weights,
    a local folder without a config, or a spec that is neither an existing path nor on the Hub (asked once, see
    ``check_reachable``)."""
    untrained = model_args.teacher and missing_weights(model_args.teacher)
    if untrained:
        raise InputError(
            f"--teacher {model_args.teacher!r}: {untrained}, so the teacher would be untrained (random weights) and "
            "teach noise. Pass a trained teacher: a folder saved with save_pretrained (weights beside config.json) or "
            "a Hub model id; to train one: hf-cakd distill --method none --student <model> --dataset <data> "
            "--output_dir my-teacher."
        )
    for role in ("teacher", "student"):
        spec = getattr(model_args, role)
        if spec and not spec.startswith(TIMM_PREFIX):
            refuse_folder_without_config(spec, role)
            check_reachable(spec, f"--{role} {spec!r}")
    if data_args.dataset:
        check_reachable(data_args.dataset, f"--dataset {data_args.dataset!r}", "dataset")


def _check_output_dir(training_args, data_args) -> None:
    output_dir = training_args.output_dir
    _check_writable(output_dir)
    if training_args.resume_from_checkpoint or data_args.overwrite_output_dir:
        return
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise UsageError(
            f"--output_dir {output_dir} exists and is not empty. Pass --resume_from_checkpoint last to continue that run, "
            "--overwrite_output_dir to write into it anyway, or choose another directory."
        )


def _check_writable(output_dir: str) -> None:
    """Stop before anything loads when ``output_dir`` is a file, or cannot be created or written; create nothing.

    The nearest folder that exists (``output_dir`` itself, or the one it would be created in) must
    take a new file: an unnamed temporary file is created there and closed, which leaves nothing.
    """
    path = Path(output_dir).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise InputError(f"--output_dir {output_dir} {where}. Pass a folder path (a new or an empty folder).")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        what = "cannot be written" if existing == path else f"cannot be created in {existing}"
        raise InputError(
            f"--output_dir {output_dir} {what} ({os.strerror(err.errno) if err.errno else err}). Pass a folder on a "
            "disk this process may write to."
        ) from err


def _load_teacher(spec: str, label_mapping, id2label: dict) -> PreTrainedModel:
    return load_classifier(spec, id2label, role="teacher", label_mapping=label_mapping)


def _load_student(student: ModelPlan, teacher_model, id2label: dict, replace_head: bool) -> PreTrainedModel:
    """The student as the plan names it, or the default student built for the data (for the teacher's family)."""
    if student.is_default_student:
        model, description = default_student(staged_view(teacher_model).family, student.default_student_size, id2label)
        logger.info("No --student: %s", description)
        return model
    return load_classifier(student.spec, id2label, role="student", replace_head=replace_head, model_args=student.model_args)


def _load_teacher_and_data(model_args, data_args, training_args, dataset: str):
    """The teacher (when its label space can be checked before the images load) and the dataset.

    A checkpoint's foreign label space stops the run here, before any image is downloaded; the
    teacher is None when the dataset's labels cannot be known before it loads, or differ from
    those its card announced (it is then loaded with the data's labels).
    """
    teacher = None
    known_labels = dataset_labels(dataset, data_args.dataset_config, label_column=data_args.label_column)
    if model_args.teacher and known_labels:
        teacher = _load_teacher(model_args.teacher, model_args.teacher_label_mapping, known_labels)
    with training_args.main_process_first(desc="loading the dataset"):  # download and prepare once
        data = load_image_dataset(
            dataset,
            train_split=data_args.train_split,
            eval_split=data_args.eval_split,
            image_column=data_args.image_column,
            label_column=data_args.label_column,
            streaming=data_args.streaming,
            **({"name": data_args.dataset_config} if data_args.dataset_config else {}),
        )
    return (teacher if known_labels == data.id2label else None), data


def _model_plan(role: str, spec: str, timm_args: dict | None, training_args, data) -> ModelPlan:
    """A given model's plan; a ``timm:`` model built from scratch (a student: a teacher needs weights) gets its
    input resolution here.

    Its timm config names the resolution of the architecture's reference weights (224 px), which
    for 32 px data would cost about 50x the compute for nothing, so it runs at ``--<role>_image_size``
    or else the data's resolution. A fixed-size model (ViT, Mixer, Swin) is built for that
    resolution (``img_size``) unless ``--<role>_model_args`` names one; any other just gets its
    inputs at it.
    """
    size_flag = f"{role}_image_size"
    requested = getattr(training_args, size_flag)
    from_scratch = missing_weights(spec) is not None
    if not spec.startswith(TIMM_PREFIX):
        return ModelPlan(spec, timm_args, requested, f"--{size_flag}" if requested else None, from_scratch=from_scratch)
    side = requested or data.first_image_side  # the resolution a model built for this data gets
    if get_pretrained_cfg(spec[len(TIMM_PREFIX) :]).fixed_input_size and "img_size" not in (timm_args or {}):
        timm_args = {**(timm_args or {}), "img_size": side}
    if requested:
        return ModelPlan(spec, timm_args, side, f"--{size_flag}", from_scratch=True)
    logger.info("%s %s is built from scratch: it runs at the data's %d px (--%s to change).", role.capitalize(), spec, side, size_flag)
    return ModelPlan(spec, timm_args, side, FROM_THE_DATA, from_scratch=True)


def _resume_point(resume: str | None) -> str | bool | None:
    """``--resume_from_checkpoint last`` (or ``true``) resumes from the newest complete checkpoint."""
    return True if resume and resume.lower() in ("last", "true") else resume


def _trainer_arguments(training_args, student: ModelPlan, teacher: ModelPlan | None) -> DistillationTrainingArguments:
    """The trainer's copy of ``training_args``: the planned resolutions, and the Trainer's own push as planned.

    The Trainer pushes checkpoints as ``--hub_strategy`` says; the final student and its card are
    pushed by ``hub.push_student`` at the end (the Trainer's end-of-training push would write its
    own card), so with ``end`` the Trainer does not push, nor create the repository, at all.
    """
    trainer_args = dataclasses.replace(
        training_args,
        push_to_hub=training_args.push_to_hub and training_args.hub_strategy != HubStrategy.END,
        student_image_size=student.image_size,
        teacher_image_size=None if teacher is None else teacher.image_size,
    )
    trainer_args.loader_defaults = training_args.loader_defaults  # decided from what the user passed, not the copy
    return trainer_args
