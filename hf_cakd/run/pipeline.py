"""The whole distillation run as one library call: ``hf_cakd.distill(model_args, data_args, training_args)``.

Plans the run (:func:`~hf_cakd.run.plan.plan_run`: dataset, both models, resolutions, label mapping,
default student), then builds each model's transforms, trains with
:class:`~hf_cakd.DistillationTrainer`, evaluates the teacher, the student and the method's own
classifiers, and writes ``results.json`` and the model card beside the saved student (pushing
both when asked). The arguments are read, never changed. ``scripts/distill.py`` and ``hf-cakd distill`` parse flags into these
dataclasses and call :func:`distill`; the demo and the benchmarks call it directly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

from ..backbones.registry import unwrap_timm
from ..training.checkpointing import writing_into
from ..data import DistillationCollator, DistillationTransform, image_processor_for, model_input_spec
from ..data.transforms import SMALL_IMAGE_SIDE
from ..data.augment import AUGMENTATION_FLAGS, POLICY_EXAMPLES, Augmentation
from .defaults import default_image_processor
from ..errors import UsageError
from .hub import CardInputs, default_license, framework_versions, make_timm_loadable, push_student, student_model_card
from ..model_specs import load_image_processor
from ..methods import AUTO_METHOD
from .plan import RunPlan, plan_run, split_size
from ..training.trainer import DistillationTrainer, DistillationTrainingArguments

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.json"
NEAR_CHANCE = 1.5
"""A teacher whose top-1 on the eval rows is under this many times chance is reported as near chance."""


@dataclass
class ModelArguments:
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "A trained classifier: a Hub id or a local save_pretrained folder (its weights beside config.json); "
            "a config or timm:<name> has no weights and is refused. Not needed for --method none."
        },
    )
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
        mapping = self.teacher_label_mapping
        flag = "--teacher_label_mapping"
        if isinstance(mapping, str) and mapping.endswith(".json"):
            if not os.path.isfile(mapping):
                raise UsageError(
                    f"{flag} {mapping}: there is no such file. Pass an existing .json file, by_name, or the JSON itself."
                )
            flag = f"{flag} {mapping}"
            with open(mapping, encoding="utf-8") as f:
                mapping = f.read()  # a mapping kept in a file, like examples/cifar10-from-imagenet1k.json
        if mapping != "by_name":
            self.teacher_label_mapping = _json_option(mapping, flag, example='{"cat": "tabby, tabby cat"}')


@dataclass
class DataArguments:
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset name, a local parquet / arrow / imagefolder / save_to_disk directory, or one parquet, "
            "arrow, csv or json(l) file. Default: the dataset the teacher's model card names whose label count "
            "matches its head."
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
        for flag in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise UsageError(
                    f"--{flag} {value} leaves no rows: pass a positive number, or drop it to use the whole split."
                )
        self.augmentation(num_classes=1)  # refuses a bad value before anything loads (the classes come with the data)

    def augmentation(self, num_classes: int, label_smoothing: float = 0.0) -> Augmentation:
        """The training images' augmentation these flags ask for (off by default)."""
        flags = {name: getattr(self, name) for name in AUGMENTATION_FLAGS}
        return Augmentation(**flags, num_classes=num_classes, label_smoothing=label_smoothing)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_the_run(training_args) -> None:
    """A run's log, from the command line or from Python: hf_cakd's records and the Trainer's own plan and progress
    at the run's level (:func:`run_log_level`), without the Trainer's closing advert.

    Where nothing handles hf_cakd's records (a Python call, logging not set up), they go to stderr as the
    command line shows them; logging set up by the caller (or ``hf-cakd``) is used as it is.
    """
    level = run_log_level(training_args)
    run_logger = logging.getLogger("hf_cakd")
    run_logger.setLevel(level)
    if not run_logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        run_logger.addHandler(handler)
    trainer_logger = logging.getLogger("transformers.trainer")
    trainer_logger.setLevel(level)
    if _not_an_advert not in trainer_logger.filters:
        trainer_logger.addFilter(_not_an_advert)


def _not_an_advert(record: logging.LogRecord) -> bool:
    """False for the Trainer's "Do not forget to share your model on huggingface.co/models =)": the run pushes
    with --push_to_hub, and says so."""
    return "Do not forget to share your model" not in record.getMessage()


def run_log_level(training_args) -> int:
    """The level of a run's own log: ``--log_level`` (``--log_level_replica`` on other processes).

    The default, ``passive``, is INFO on the main process: the resolved plan, progress and results,
    as transformers' example scripts log them.
    """
    if training_args.should_log and training_args.log_level == "passive":
        return logging.INFO
    return training_args.get_process_log_level()


def _json_option(value, flag: str, example: str = '{"img_size": 32}') -> dict | None:
    if not value or isinstance(value, dict):
        return value or None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise UsageError(f"{flag} must be a JSON object, e.g. '{example}': {err}") from err
    if not isinstance(parsed, dict):
        raise UsageError(f"{flag} must be a JSON object, got {value!r}")
    return parsed


def distill(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: DistillationTrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """Run one distillation; returns what it writes to ``results.json``. ``callbacks`` go to the trainer."""
    log_the_run(training_args)
    plan = plan_run(model_args, data_args, training_args)
    trainer, input_resolution = _build_trainer(plan, callbacks)
    with writing_into(plan.output_dir, main_process=plan.training_args.process_index == 0):
        return _train_and_report(plan, trainer, input_resolution)


def _train_and_report(plan: RunPlan, trainer: DistillationTrainer, input_resolution: dict) -> dict:
    """Evaluate the teacher, train, save, evaluate the student and its parts, write results.json and the card."""
    results: dict = {"plan": plan.to_dict(), "input_resolution": input_resolution}
    metrics: dict[str, dict[str, float]] = {}
    if plan.teacher_model is not None and trainer.eval_dataset is not None:
        metrics["teacher"] = _rows(trainer.evaluate_teacher())["teacher"]
        _log_accuracy("teacher", metrics["teacher"], trainer.eval_dataset)
        results["teacher_near_chance"] = _teacher_near_chance(metrics["teacher"]["top1"], plan, trainer.is_world_process_zero())
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=plan.resume_from_checkpoint)
    results["train_seconds"] = round(time.perf_counter() - start, 1)
    results["train_loss"] = train_result.metrics["train_loss"]  # averaged over processes (DistillationTrainer.log)
    saved_weights = trainer.ema.as_student() if plan.training_args.save_ema_as_student else contextlib.nullcontext()
    with trainer.checkpoint_io.reporting_a_full_disk(plan.output_dir), saved_weights:
        # Trainer.save_model would push with a card of its own; ours follows (docs/architecture.md).
        trainer.save_model(_internal_call=True)
    if trainer.eval_dataset is not None:
        metrics.update(_evaluate_student_and_parts(trainer))
    distillation_model = trainer.accelerator.unwrap_model(trainer.model)
    families = {"student": distillation_model.student_view.family}
    if trainer.teacher_view is not None:
        families["teacher"] = trainer.teacher_view.family
    results.update(metrics=metrics, families=families, **distillation_model.description(), recipe=plan.recipe())
    results["skipped_images"] = trainer.skipped_images()
    results["environment"] = {
        "world_size": plan.training_args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "mixed_precision": trainer.accelerator.mixed_precision,
        "versions": framework_versions(),
    }
    if trainer.is_world_process_zero():
        _write_and_push(plan, trainer, results)
    return results


def _build_trainer(plan: RunPlan, callbacks) -> tuple[DistillationTrainer, dict]:
    """Build both models' transforms and the trainer; each model's input resolution and source."""
    student, student_processor = plan.student_model, _student_processor(plan)
    teacher = plan.teacher_model
    teacher_processor = load_image_processor(plan.teacher.spec) if plan.teacher else None

    def transform(train: bool) -> DistillationTransform:
        return DistillationTransform.for_models(
            student,
            teacher,
            train=train,
            student_processor=student_processor,
            teacher_processor=teacher_processor,
            student_image_size=plan.student.image_size,
            teacher_image_size=None if plan.teacher is None else plan.teacher.image_size,
            image_column=plan.data.image_column,
            label_column=plan.data.label_column,
            skip_bad_images=plan.skip_bad_images,
            # A loaded dataset's label range was checked whole by load_image_dataset; a stream's is checked as read.
            num_labels=plan.data.num_labels if plan.streaming else None,
            views_on_device=train,  # one augmentation per image; each model's view made on the device
            augmentation=plan.augmentation if train else None,
        )

    train_transform = transform(train=True)
    train_dataset = train_transform.apply_to(
        plan.train_rows(), split=plan.train_split, shuffle_seed=plan.training_args.seed
    )
    eval_rows = plan.eval_rows()
    eval_dataset = None if eval_rows is None else transform(train=False).apply_to(eval_rows, split=plan.eval_split)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=plan.training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DistillationCollator(),
        # pipeline() needs one, even for a student that came without; at the resolution the student was trained at
        processing_class=_saved_processor(
            student, student_processor, plan.student.image_size, plan.data.first_image_side <= SMALL_IMAGE_SIDE
        ),
        callbacks=callbacks,
        device_views=train_transform.device_views,
    )
    resolutions = {}
    for role, model, processor in (("student", student, student_processor), ("teacher", teacher, teacher_processor)):
        view = getattr(trainer.model, f"{role}_view")
        if view is not None:
            source = getattr(plan, role).image_size_source or _resolution_source(model, processor)
            resolutions[role] = {"size": list(view.image_size), "source": source}
            logger.info("%s input: %dx%d, from %s", role.capitalize(), *view.image_size, source)
    return trainer, resolutions


def _student_processor(plan: RunPlan):
    """The student's image processor: its own, or the default student's for the data."""
    if plan.student.is_default_student:
        return default_image_processor(plan.student.default_student_size)
    return load_image_processor(plan.student.spec)


def _saved_processor(student, processor, image_size: int | None, small_images: bool | None = None):
    """The student's image processor as saved beside it: its own when it does the eval transform the student was
    evaluated with, else (``--student_image_size``, none of its own, or tiny images that its own would crop) one
    that does. ``small_images``: whether the data are tiny images (see :func:`~hf_cakd.data.is_small_image`)."""
    if processor is not None and image_size is None:
        spec = model_input_spec(student, processor)
        if not small_images or spec.resize == spec.size:  # its own view of these images is the eval view
            return processor
    return image_processor_for(student, processor, image_size=image_size, small_images=small_images)


def _evaluate_student_and_parts(trainer: DistillationTrainer) -> dict[str, dict[str, float]]:
    student = trainer.evaluate()
    metrics = {"student": {"top1": student["eval_top1"], "top5": student["eval_top5"]}}
    if trainer.ema is not None:
        metrics.update(_rows(trainer.evaluate_classifiers(trainer.ema.evaluation_logits)))
    metrics.update(_rows(trainer.evaluate_method_parts()))
    for name, values in metrics.items():
        _log_accuracy(name, values, trainer.eval_dataset)
    return metrics


def _teacher_near_chance(top1: float, plan: RunPlan, warn: bool = True) -> bool:
    """Whether the teacher's top-1 on the eval rows is under :data:`NEAR_CHANCE` x chance; with ``warn`` (the main
    process: the others would repeat it), a WARNING says so."""
    chance = 1 / plan.data.num_labels
    if top1 >= NEAR_CHANCE * chance:
        return False
    if warn:
        logger.warning(
            "The teacher's top-1 on the %s split is %.2f%%, near chance (%.2f%% for %d classes): it has little to teach. "
            "Check that --teacher %s was trained on these classes (--teacher_label_mapping maps its labels to the "
            "dataset's), and that its images are preprocessed as in its training.",
            plan.eval_split, 100 * top1, 100 * chance, plan.data.num_labels, plan.teacher.spec,
        )  # fmt: skip
    return True


def _log_accuracy(name: str, values: dict[str, float], eval_dataset) -> None:
    logger.info("%s on %s: top-1 %.2f%%", name.capitalize(), split_size(eval_dataset, "eval"), 100 * values["top1"])


def _write_and_push(plan: RunPlan, trainer: DistillationTrainer, results: dict) -> None:
    """``results.json``, the timm loader's files and the card beside the student; then the push, when planned."""
    args = plan.training_args
    repo_id = (args.hub_model_id or os.path.basename(os.path.abspath(plan.output_dir))) if plan.push_to_hub else None
    # Its usage snippets load the repository it is pushed to, else this folder.
    card = student_model_card(_card_inputs(plan, trainer, results), repo_id=repo_id or plan.output_dir)
    with trainer.checkpoint_io.reporting_a_full_disk(plan.output_dir):
        with open(os.path.join(plan.output_dir, RESULTS_NAME), "w") as f:
            json.dump(results, f, indent=2)
        make_timm_loadable(plan.output_dir)
        card.save(os.path.join(plan.output_dir, "README.md"))
    if repo_id:  # Trainer.train has waited for the last checkpoint's push: the student's lands after it
        push_student(plan.output_dir, repo_id, card, token=args.hub_token, private=args.hub_private_repo)


def _card_inputs(plan: RunPlan, trainer, results) -> CardInputs:
    method = trainer.accelerator.unwrap_model(trainer.model).method
    teacher = None if plan.teacher is None else plan.teacher.spec
    args = plan.training_args
    return CardInputs(
        model_name=os.path.basename(os.path.abspath(plan.output_dir)),
        student=plan.student.spec,
        teacher=teacher,
        student_family=results["families"]["student"],
        teacher_family=results["families"].get("teacher"),
        method=method.name,
        method_title=method.title,
        method_chosen_by_auto=plan.method == AUTO_METHOD,
        method_options=method.changed_options(),
        pair_options=method.options_set_by_pair,
        experimental_options=method.config.experimental_option_names(),
        dataset=plan.dataset,
        eval_split=plan.eval_split if "student" in results["metrics"] else None,
        metrics=results["metrics"],
        global_steps=trainer.state.global_step,
        # The Trainer's count, steps over batches per epoch; for a stream it divides by --max_steps instead.
        epochs_seen=None if plan.streaming else round(trainer.state.epoch or 0.0, 4),
        per_device_batch_size=args.per_device_train_batch_size,
        num_processes=args.world_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        license=plan.license or default_license(teacher, plan.student.spec)[0],
        log_history=trainer.state.log_history,
        input_resolutions={
            role: tuple(results[role]["image_size"]) for role in ("student", "teacher") if results.get(role)
        },
        skipped_images=results["skipped_images"].get("train", 0),
        saved_student=results["recipe"]["saved_student"],
        ema_decay=args.model_ema_decay,
        recipe=_recipe_flags_set(results["recipe"]),
        num_classes=plan.data.num_labels,
        train_split=plan.train_split,
        train_rows=None if plan.streaming else len(trainer.train_dataset),
        eval_rows=None if plan.streaming or trainer.eval_dataset is None else len(trainer.eval_dataset),
        student_from_scratch=plan.student.from_scratch,
        teacher_near_chance=results.get("teacher_near_chance", False),
    )


def _recipe_flags_set(recipe: dict) -> dict:
    """The augmentation and target flags of ``results.json``'s recipe that differ from their defaults (the card's)."""
    defaults = {**{name: getattr(Augmentation(), name) for name in AUGMENTATION_FLAGS}, "label_smoothing_factor": 0.0}
    if not (recipe["mixup_alpha"] or recipe["cutmix_alpha"]):  # they only shape Mixup/CutMix
        defaults.update(mixup_prob=recipe["mixup_prob"], mixup_switch_prob=recipe["mixup_switch_prob"])
    return {name: recipe[name] for name, default in defaults.items() if recipe[name] != default}


def _resolution_source(model, processor) -> str:
    """Where the input resolution of a model the plan left to its own preprocessing came from."""
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
