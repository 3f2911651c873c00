"""``DistillationTrainingArguments``: transformers' ``TrainingArguments`` plus the method and its options, in a module
of their own (as transformers keeps ``training_args.py`` apart from the Trainer), so that what reads the arguments
need not import the trainer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.training_args import trainer_log_levels

from ..errors import UsageError
from ..methods import AUTO_METHOD, BEST_METHOD_FOR_STUDENT, METHODS, method_config


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
            "student's family, " + ", ".join(f"{m} for {family} students" for family, m in BEST_METHOD_FOR_STUDENT.items()) + ".",
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
