"""The whole distillation run as one library call: ``hf_cakd.distill(model_args, data_args, training_args)``.

Loads the teacher, the student and the data, builds each model's transforms, trains with
:class:`~hf_cakd.DistillationTrainer`, evaluates the teacher, the student and the method's own
classifiers, and writes ``results.json`` and the model card beside the saved student (pushing
both when asked). ``scripts/distill.py`` and ``hf-cakd distill`` parse flags into these
dataclasses and call :func:`distill`; the demo and the benchmarks call it directly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from timm.models import get_pretrained_cfg
from transformers import set_seed
from transformers.trainer_utils import HubStrategy

from .backbones import staged_view
from .backbones.registry import unwrap_timm
from .defaults import default_dataset, default_dataset_warning, default_image_processor, default_student, dataset_labels
from .errors import InputError, UsageError
from .data import DistillationCollator, DistillationTransform, image_processor_for, load_image_dataset
from .data.augment import POLICY_EXAMPLES, Augmentation
from .ema import EMA_ROW
from .hub import CardInputs, default_license, framework_versions, make_timm_loadable, push_student, student_model_card
from .model_specs import TIMM_PREFIX, load_classifier, load_config, load_image_processor
from .trainer import DistillationTrainer, DistillationTrainingArguments

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.json"
AUGMENTATION_FLAGS = (
    "auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob",
)  # fmt: skip


@dataclass
class ModelArguments:
    teacher: str | None = field(default=None, metadata={"help": "Same forms as --student; not needed for --method none."})
    student: str | None = field(
        default=None,
        metadata={
            "help": "Hub id, local directory, timm:<name>, or a config.json (from scratch). Default: a student of "
            "another family than the teacher's (ResNet-18- or DeiT-Tiny-sized), built at the data's resolution."
        },
    )
    student_model_args: dict | str | None = field(
        default=None, metadata={"help": 'JSON kwargs for timm.create_model with timm: specs, e.g. \'{"img_size": 32}\'.'}
    )
    teacher_model_args: dict | str | None = field(
        default=None, metadata={"help": "As --student_model_args, for the teacher."}
    )
    teacher_label_mapping: dict | str | None = field(
        default=None,
        metadata={
            "help": "When the teacher's labels differ from the dataset's: 'by_name' keeps the teacher's classes whose "
            'names match, or a JSON object (or a .json file) {"dataset label": "teacher label" or ["teacher label", '
            "...]} (a list sums those classes' probabilities; see examples/cifar10-from-imagenet1k.json).",
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace the student's classification head when its labels differ from the dataset's."},
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": "License of the distilled student, in its card (default: the teacher's card license, else the "
            "student's, else 'other')."
        },
    )

    def __post_init__(self):
        self.student_model_args = _json_option(self.student_model_args, "--student_model_args")
        self.teacher_model_args = _json_option(self.teacher_model_args, "--teacher_model_args")
        mapping = self.teacher_label_mapping
        if isinstance(mapping, str) and mapping.endswith(".json") and os.path.isfile(mapping):
            with open(mapping, encoding="utf-8") as f:
                mapping = f.read()  # a mapping kept in a file, like examples/cifar10-from-imagenet1k.json
        if mapping != "by_name":
            self.teacher_label_mapping = _json_option(mapping, "--teacher_label_mapping")


@dataclass
class DataArguments:
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset name, or a local parquet / arrow / imagefolder directory. Default: the dataset the "
            "teacher's model card names whose label count matches its head."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Default: test, validation, valid or val."})
    image_column: str | None = field(default=None, metadata={"help": "Default: detected."})
    label_column: str | None = field(default=None, metadata={"help": "Default: detected."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N rows only."})
    skip_bad_images: bool = field(default=False, metadata={"help": "Skip undecodable images instead of stopping."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the dataset instead of downloading and preparing it first; needs --max_steps. The label "
            "column must name its classes (a ClassLabel feature)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty --output_dir (without resuming)."}
    )
    # The recipe for long runs (hf_cakd.data.augment): teacher and student see one augmented, mixed image.
    auto_augment: str | None = field(
        default=None,
        metadata={"help": f"A timm augmentation policy for training images: {POLICY_EXAMPLES}. Default: none."},
    )
    color_jitter: float | None = field(
        default=None,
        metadata={"help": "Colour jitter strength (brightness, contrast, saturation) for training images. Default: none."},
    )
    random_erasing: float = field(
        default=0.0, metadata={"help": "Probability of erasing a random box of a training image (timm's, per-pixel noise)."}
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup's Beta(alpha, alpha) mixing ratio; 0: no Mixup."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix's Beta(alpha, alpha) box ratio; 0: no CutMix."})
    mixup_prob: float = field(
        default=1.0, metadata={"help": "Probability that a batch is mixed, with --mixup_alpha or --cutmix_alpha."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With both alphas, the probability that a mixed batch uses CutMix, not Mixup."}
    )

    def __post_init__(self):
        self.augmentation(num_classes=1)  # refuses a bad value before anything loads (the classes come with the data)

    def augmentation(self, num_classes: int, label_smoothing: float = 0.0) -> Augmentation:
        """The training images' augmentation these flags ask for (off by default)."""
        flags = {name: getattr(self, name) for name in AUGMENTATION_FLAGS}
        return Augmentation(**flags, num_classes=num_classes, label_smoothing=label_smoothing)


def run_log_level(training_args) -> int:
    """The level of a run's own log: ``--log_level`` (``--log_level_replica`` on other processes).

    The default, ``passive``, is INFO on the main process: the resolved plan, progress and results,
    as transformers' example scripts log them.
    """
    if training_args.should_log and training_args.log_level == "passive":
        return logging.INFO
    return training_args.get_process_log_level()


def _json_option(value, flag: str) -> dict | None:
    if not value or isinstance(value, dict):
        return value or None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise UsageError(f"{flag} must be a JSON object, e.g. '{{\"img_size\": 32}}': {err}") from err
    if not isinstance(parsed, dict):
        raise UsageError(f"{flag} must be a JSON object, got {value!r}")
    return parsed


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


def _select(split, limit):
    if split is None or limit is None:
        return split
    if isinstance(split, datasets.IterableDataset):
        return split.take(limit)
    return split.select(range(min(limit, len(split))))


def _images(split, kind: str) -> str:
    """A split's size for the log (``kind``: train, eval); a stream's is unknown without reading it."""
    if split is None:
        return f"no {kind} split"
    if isinstance(split, datasets.IterableDataset):
        return f"the streamed {kind} images"
    return f"{len(split)} {kind} images"


def distill(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: DistillationTrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """Run one distillation; returns what it writes to ``results.json``. ``callbacks`` go to the trainer."""
    logging.getLogger("hf_cakd").setLevel(run_log_level(training_args))
    if training_args.method != "none" and not model_args.teacher:
        raise UsageError(f"--method {training_args.method} distils from a teacher: pass --teacher.")
    if not (model_args.student or model_args.teacher):
        raise UsageError("Pass --student (or --teacher alone: a student of another family is then chosen for it).")
    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError(
            "--streaming needs --max_steps: a stream has no length to count epochs by. Pass --max_steps N "
            "(the number of optimizer steps), or drop --streaming."
        )
    _check_output_dir(training_args, data_args)
    set_seed(training_args.seed)
    # The Trainer pushes checkpoints as --hub_strategy says; the final student and its card are pushed
    # by push_student at the end (the Trainer's end-of-training push would write its own card).
    push_to_hub = training_args.push_to_hub
    training_args.push_to_hub = push_to_hub and training_args.hub_strategy != HubStrategy.END

    data, student, student_processor, teacher, teacher_processor, sized_by_data = _load_data_and_models(
        model_args, data_args, training_args
    )

    augmentation = data_args.augmentation(data.num_labels, training_args.label_smoothing_factor)

    def transform(train: bool) -> DistillationTransform:
        return DistillationTransform.for_models(
            student,
            teacher,
            train=train,
            student_processor=student_processor,
            teacher_processor=teacher_processor,
            student_image_size=training_args.student_image_size,
            teacher_image_size=training_args.teacher_image_size,
            image_column=data.image_column,
            label_column=data.label_column,
            skip_bad_images=data_args.skip_bad_images,
            # A loaded dataset's label range was checked whole by load_image_dataset; a stream's is checked as read.
            num_labels=data.num_labels if data_args.streaming else None,
            views_on_device=train,  # one augmentation per image; each model's view made on the device
            augmentation=augmentation if train else None,
        )


    train_transform = transform(train=True)
    train_dataset = train_transform.apply_to(
        _select(data.train, data_args.max_train_samples), split=data_args.train_split, shuffle_seed=training_args.seed
    )
    eval_split = _select(data.eval, data_args.max_eval_samples)
    eval_dataset = None if eval_split is None else transform(train=False).apply_to(eval_split, split=data.eval_split)

    saved_processor = student_processor  # pipeline() needs one, even for a student that came without
    if saved_processor is None:
        saved_processor = image_processor_for(student, image_size=training_args.student_image_size)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DistillationCollator(),
        processing_class=saved_processor,
        callbacks=callbacks,
        device_views=train_transform.device_views,
    )
    distillation_model = trainer.model
    teacher_described = f"{model_args.teacher} ({trainer.teacher_view.family})" if teacher is not None else "none"
    logger.info(
        "Plan: --method %s, teacher %s, student %s (%s), --dataset %s (%s, %s), --output_dir %s",
        training_args.method, teacher_described, model_args.student, distillation_model.student_view.family,
        data_args.dataset, _images(train_dataset, "train"), _images(eval_dataset, "eval"), training_args.output_dir,
    )  # fmt: skip
    results: dict = {"input_resolution": {}}
    for role, model, processor, flag_value in (
        ("student", student, student_processor, training_args.student_image_size),
        ("teacher", teacher, teacher_processor, training_args.teacher_image_size),
    ):
        view = getattr(distillation_model, f"{role}_view")
        if view is not None:
            source = "the data (built from scratch)" if role in sized_by_data else _resolution_source(
                role, model, processor, flag_value
            )
            results["input_resolution"][role] = {"size": list(view.image_size), "source": source}
            logger.info("%s input: %dx%d, from %s", role.capitalize(), *view.image_size, source)
    families = {"student": distillation_model.student_view.family}
    metrics: dict[str, dict[str, float]] = {}
    if teacher is not None and eval_dataset is not None:
        families["teacher"] = trainer.teacher_view.family
        metrics["teacher"] = _rows(trainer.evaluate_teacher())["teacher"]
        logger.info("Teacher on %s: top-1 %.2f%%", _images(eval_dataset, "eval"), 100 * metrics["teacher"]["top1"])

    start = time.perf_counter()
    resume = training_args.resume_from_checkpoint
    # "last" (or "true") resumes from the newest complete checkpoint in --output_dir.
    resume = True if resume and resume.lower() in ("last", "true") else resume
    train_result = trainer.train(resume_from_checkpoint=resume)
    results["train_seconds"] = round(time.perf_counter() - start, 1)
    results["train_loss"] = train_result.training_loss
    saved_weights = trainer.ema.as_student() if training_args.save_ema_as_student else contextlib.nullcontext()
    with trainer.reporting_a_full_disk(training_args.output_dir), saved_weights:
        trainer.save_model(_internal_call=True)  # not the Trainer's push: ours follows, with the card
    if eval_dataset is not None:
        student_metrics = trainer.evaluate()
        metrics["student"] = {"top1": student_metrics["eval_top1"], "top5": student_metrics["eval_top5"]}
        logger.info("Student on %s: top-1 %.2f%%", _images(eval_dataset, "eval"), 100 * metrics["student"]["top1"])
        for name, values in _rows({**trainer.evaluate_ema(), **trainer.evaluate_method_parts()}).items():
            metrics[name] = values
            logger.info(
                "%s on %s: top-1 %.2f%%", name.capitalize(), _images(eval_dataset, "eval"), 100 * values["top1"]
            )
    results.update(metrics=metrics, families=families, **distillation_model.description())
    results["recipe"] = {
        **{name: getattr(data_args, name) for name in AUGMENTATION_FLAGS},
        "model_ema_decay": training_args.model_ema_decay,
        "saved_student": EMA_ROW if training_args.save_ema_as_student else "student",
    }

    results["skipped_images"] = trainer.skipped_images()
    results["environment"] = {
        "world_size": training_args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "mixed_precision": trainer.accelerator.mixed_precision,
        "versions": framework_versions(),
    }

    if trainer.is_world_process_zero():
        card = student_model_card(
            _card_inputs(model_args, data_args, training_args, trainer, data, results),
            repo_id=training_args.hub_model_id,
        )
        with trainer.reporting_a_full_disk(training_args.output_dir):
            with open(os.path.join(training_args.output_dir, RESULTS_NAME), "w") as f:
                json.dump(results, f, indent=2)
            make_timm_loadable(training_args.output_dir)
            card.save(os.path.join(training_args.output_dir, "README.md"))
        if push_to_hub:
            trainer._finish_current_push()  # the last checkpoint's push lands before the final student's
            repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
            push_student(
                training_args.output_dir,
                repo_id,
                card,
                token=training_args.hub_token,
                private=training_args.hub_private_repo,
            )
    return results


def _card_inputs(model_args, data_args, training_args, trainer, data, results) -> CardInputs:
    method = trainer.accelerator.unwrap_model(trainer.model).method
    license_id = model_args.license or default_license(model_args.teacher, model_args.student)[0]
    return CardInputs(
        model_name=os.path.basename(os.path.abspath(training_args.output_dir)),
        student=model_args.student,
        teacher=model_args.teacher,
        student_family=results["families"]["student"],
        teacher_family=results["families"].get("teacher"),
        method=method.name,
        method_title=method.title,
        method_options=method.config.changed_options(),
        experimental_options=method.config.experimental_option_names(),
        dataset=data_args.dataset,
        eval_split=data.eval_split if "student" in results["metrics"] else None,
        metrics=results["metrics"],
        global_steps=trainer.state.global_step,
        # The Trainer's count, steps over batches per epoch; for a stream it divides by --max_steps instead.
        epochs_seen=None if data_args.streaming else round(trainer.state.epoch or 0.0, 4),
        per_device_batch_size=training_args.per_device_train_batch_size,
        num_processes=training_args.world_size,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        learning_rate=training_args.learning_rate,
        seed=training_args.seed,
        license=license_id,
        log_history=trainer.state.log_history,
        input_resolutions={
            role: tuple(results[role]["image_size"]) for role in ("student", "teacher") if results.get(role)
        },
        skipped_images=results["skipped_images"].get("train", 0),
        saved_student=results["recipe"]["saved_student"],
        ema_decay=training_args.model_ema_decay,
    )


def _load_data_and_models(model_args, data_args, training_args):
    """The dataset, the student and the teacher with their processors; label spaces checked before images load.

    Without ``--dataset`` the teacher's card names one; without ``--student`` a student of another
    family is built from config at the data's resolution (hf_cakd.defaults).
    """
    if not data_args.dataset:
        num_labels = load_config(model_args.teacher, role="teacher").num_labels
        data_args.dataset = default_dataset(model_args.teacher, num_labels)
        logger.warning(default_dataset_warning(data_args.dataset, model_args.teacher, num_labels))

    def load_teacher(id2label):
        return load_classifier(
            model_args.teacher,
            id2label,
            role="teacher",
            label_mapping=model_args.teacher_label_mapping,
            model_args=model_args.teacher_model_args,
        )

    teacher = None
    known_labels = dataset_labels(data_args.dataset, data_args.dataset_config, label_column=data_args.label_column)
    # A checkpoint's foreign label space stops here, before any image is downloaded (a timm: teacher is
    # built for the data's labels and resolution, so it waits for the data).
    if model_args.teacher and known_labels and not model_args.teacher.startswith(TIMM_PREFIX):
        teacher = load_teacher(known_labels)
    with training_args.main_process_first(desc="loading the dataset"):  # download and prepare once
        data = load_image_dataset(
            data_args.dataset,
            train_split=data_args.train_split,
            eval_split=data_args.eval_split,
            image_column=data_args.image_column,
            label_column=data_args.label_column,
            streaming=data_args.streaming,
            **({"name": data_args.dataset_config} if data_args.dataset_config else {}),
        )
    from_data = {role for role in ("student", "teacher") if _default_timm_resolution(role, model_args, training_args, data)}
    if model_args.teacher and (teacher is None or known_labels != data.id2label):
        teacher = load_teacher(data.id2label)
    teacher_processor = load_image_processor(model_args.teacher) if model_args.teacher else None
    if model_args.student:
        student = load_classifier(
            model_args.student,
            data.id2label,
            role="student",
            replace_head=model_args.ignore_mismatched_sizes,
            model_args=model_args.student_model_args,
        )
        student_processor = load_image_processor(model_args.student)
    else:
        image_size = training_args.student_image_size or _image_side(data)
        student, description = default_student(staged_view(teacher).family, image_size, data.id2label)
        model_args.student = student.config._name_or_path
        student_processor = default_image_processor(image_size)
        from_data.add("student")
        logger.info("No --student: %s", description)
    return data, student, student_processor, teacher, teacher_processor, from_data


def _default_timm_resolution(role: str, model_args, training_args, data) -> bool:
    """Build a ``timm:`` model from scratch for its input resolution; True when the data chose it.

    Its timm config names the resolution of the architecture's reference weights (224 px), which
    for 32 px data would cost about 50x the compute for nothing, so it runs at ``--<role>_image_size``
    or else the data's resolution. A fixed-size model (ViT, Mixer, Swin) is built for that
    resolution (``img_size``) unless ``--<role>_model_args`` names one; any other just gets its
    inputs at it.
    """
    spec, size_flag = getattr(model_args, role), f"{role}_image_size"
    if not (spec and spec.startswith(TIMM_PREFIX)):
        return False
    requested = getattr(training_args, size_flag)
    side = requested or _image_side(data)
    setattr(training_args, size_flag, side)
    timm_args = getattr(model_args, f"{role}_model_args") or {}
    if get_pretrained_cfg(spec[len(TIMM_PREFIX) :]).fixed_input_size and "img_size" not in timm_args:
        setattr(model_args, f"{role}_model_args", {**timm_args, "img_size": side})
    if requested:
        return False
    logger.info("%s %s is built from scratch: it runs at the data's %d px (--%s to change).", role.capitalize(), spec, side, size_flag)
    return True


def _image_side(data) -> int:
    """The shorter side of the first training image: the resolution a student built for this data gets."""
    image = next(iter(data.train.cast_column(data.image_column, datasets.Image())))[data.image_column]
    return min(image.size)


def _resolution_source(role: str, model, processor, flag_value) -> str:
    """Where a model's input resolution came from, for the log and results.json."""
    if flag_value:
        return f"--{role}_image_size"
    if processor is not None:
        return "its image processor"
    if hasattr(unwrap_timm(model), "pretrained_cfg"):
        return "its timm data config"
    return "its model config"


def _rows(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"teacher_top1": .., "teacher_top5": ..}`` -> ``{"teacher": {"top1": .., "top5": ..}}``."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        name, metric = key.rsplit("_", 1)
        rows.setdefault(name, {})[metric] = value
    return rows
