"""The ``hf-cakd`` command: ``hf-cakd distill <flags | run.yaml | run.json>`` and ``hf-cakd push <output_dir>``.

``scripts/distill.py`` is ``hf-cakd distill`` for ``accelerate launch``. Flags are the fields of
:class:`~hf_cakd.pipeline.ModelArguments`, :class:`~hf_cakd.pipeline.DataArguments`, every
method's options (one flag each, taken from the method registry) and
:class:`~hf_cakd.DistillationTrainingArguments`. ``--help`` lists hf_cakd's flags and the common
training ones; ``--help_all`` lists every ``TrainingArguments`` flag too.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from typing import Any

import transformers
from transformers import HfArgumentParser, TrainingArguments

from .errors import InputError, UsageError, run_cli
from .hub import push_student
from .methods import METHODS, method_config
from .pipeline import DataArguments, ModelArguments, distill, run_log_level
from .trainer import DistillationTrainingArguments

HELP_ALL_FLAG = "--help_all"
CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")
# TrainingArguments flags shown by the short --help; --help_all shows them all.
COMMON_TRAINING_FLAGS = {
    "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "learning_rate", "weight_decay", "warmup_steps", "lr_scheduler_type",
    "eval_strategy", "save_strategy", "save_steps", "save_total_limit", "logging_steps", "seed", "bf16", "fp16",
    "use_cpu", "dataloader_num_workers", "resume_from_checkpoint", "push_to_hub", "hub_model_id", "report_to",
}  # fmt: skip
USAGE = (
    "hf-cakd distill --teacher MODEL --dataset DATA [--student MODEL] [--method {methods}] --output_dir DIR [flags]\n"
    "       hf-cakd distill run.yaml   (or run.json: the same flags as keys)\n"
    "       --help: hf_cakd's flags; --help_all: every TrainingArguments flag too"
)


def method_options_dataclass() -> type:
    """One optional field per option of any registered method; each help names the methods and defaults."""
    options: dict[str, dict[str, Any]] = {}
    for name, method in sorted(METHODS.items()):
        hints = typing.get_type_hints(method.config_class)
        for option in dataclasses.fields(method.config_class):
            entry = options.setdefault(option.name, {"type": hints[option.name], "help": option.metadata.get("help", ""), "defaults": []})
            entry["defaults"].append(f"{name} {option.default}")
    fields = []
    for option, entry in options.items():
        metadata = {"help": f"{entry['help']} Default per method: {', '.join(entry['defaults'])}."}
        if entry["type"] is bool:
            metadata.update(nargs="?", const=True)
        fields.append((option, entry["type"] | None, dataclasses.field(default=None, metadata=metadata)))
    return dataclasses.make_dataclass("MethodOptions", fields)


MethodOptions = method_options_dataclass()
ARGUMENT_GROUPS = {
    ModelArguments: "models",
    DataArguments: "data",
    MethodOptions: "method options (each applies to the methods its help names)",
    DistillationTrainingArguments: "training (transformers TrainingArguments, plus --method)",
}


for dataclass_type, group in ARGUMENT_GROUPS.items():
    dataclass_type._argument_group_name = group  # HfArgumentParser's --help section for its flags


def build_parser(show_all: bool = False) -> HfArgumentParser:
    parser = HfArgumentParser(tuple(ARGUMENT_GROUPS), usage=USAGE.format(methods=",".join(sorted(METHODS))))
    if not show_all:
        base_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
        for action in parser._actions:
            if action.dest in base_fields and action.dest not in COMMON_TRAINING_FLAGS:
                action.help = argparse.SUPPRESS
    return parser


def parse_distill_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, DistillationTrainingArguments]:
    """Flags, or one config file, into the three argument dataclasses; the method's options join ``method_config``."""
    show_all = HELP_ALL_FLAG in argv
    parser = build_parser(show_all)
    if show_all:
        parser.print_help()
        raise SystemExit(0)
    try:
        if len(argv) == 1 and argv[0].endswith(CONFIG_FILE_SUFFIXES):
            if not os.path.isfile(argv[0]):
                raise UsageError(f"No config file {argv[0]}: pass an existing .yaml/.json file, or the flags themselves.")
            parse = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
            model_args, data_args, options, training_args = parse(argv[0])
        else:
            model_args, data_args, options, training_args = parser.parse_args_into_dataclasses(args=argv)
        given = {name: value for name, value in dataclasses.asdict(options).items() if value is not None}
        training_args.method_config = method_config(
            training_args.method, {**training_args.method_config, **given}
        ).to_dict()
    except (ValueError, TypeError) as err:  # raised by the dataclasses' checks of their values
        raise UsageError(str(err)) from err
    return model_args, data_args, training_args


def distill_main(argv: list[str] | None = None, callbacks: list | None = None) -> dict:
    """``hf-cakd distill``: parse ``argv`` and run :func:`hf_cakd.distill`."""
    model_args, data_args, training_args = parse_distill_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    # The Trainer's own plan and progress (examples, epochs, batch sizes, steps, saves), not every transformers INFO.
    logging.getLogger("transformers.trainer").setLevel(run_log_level(training_args))
    return distill(model_args, data_args, training_args, callbacks=callbacks)


def push_main(argv: list[str]) -> None:
    """``hf-cakd push OUTPUT_DIR --repo_id ID``: push a finished output folder (student at the top, then its card)."""
    parser = argparse.ArgumentParser(prog="hf-cakd push", description=push_main.__doc__)
    parser.add_argument("output_dir", help="A folder written by hf-cakd distill.")
    parser.add_argument("--repo_id", required=True, help="The Hub repository, owner/name.")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one).")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument(
        "--include_distillation_parts",
        action="store_true",
        help="Also upload the assistant and the method's parts, under distillation/.",
    )
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.output_dir, "config.json")):
        raise InputError(f"{args.output_dir} holds no saved student (config.json): pass a folder hf-cakd distill wrote.")
    push_student(
        args.output_dir,
        args.repo_id,
        token=args.token,
        private=args.private or None,
        include_distillation_parts=args.include_distillation_parts,
    )


COMMANDS = {"distill": distill_main, "push": push_main}


def main(argv: list[str] | None = None) -> None:
    """The ``hf-cakd`` console entry point; exit codes as hf_cakd.errors documents (README: "Exit codes")."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: hf-cakd {{{','.join(COMMANDS)}}} ...  (hf-cakd <command> --help)", file=sys.stderr)
        raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    run_cli(COMMANDS[argv[0]], argv[1:])
