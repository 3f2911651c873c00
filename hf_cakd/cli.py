"""The ``hf-cakd`` command: ``hf-cakd distill <flags | run.yaml | run.json>`` and ``hf-cakd push <output_dir>``.

``scripts/distill.py`` is ``hf-cakd distill`` for ``accelerate launch``. Flags are the fields of
:class:`~hf_cakd.run.pipeline.ModelArguments`, :class:`~hf_cakd.run.pipeline.DataArguments`, the chosen
method's options (one flag each, from its config in the method registry) and
:class:`~hf_cakd.DistillationTrainingArguments`. ``--method X --help`` lists the flags most runs set
(``SHORT_HELP_FLAGS``) and X's own options; ``--help_all`` lists every flag. A config file takes the same flags as keys, and may group the
method's options under its name (``fbt: {fbt_infonce_weight: 0.5}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import types
import typing

import huggingface_hub
import transformers
import yaml
from transformers import HfArgumentParser

from .errors import InputError, UsageError, run_cli
from .run.hub import push_student
from .methods import AUTO_METHOD, METHODS, method_class, method_config
from .methods.base import option_owners, refuse_unknown_options
from .methods.renamed import refuse_old_names
from .run.pipeline import LOG_FORMAT, DataArguments, ModelArguments, distill
from .training.training_args import DistillationTrainingArguments

HELP_ALL_FLAG = "--help_all"
# Flags a run needs, and what they are for (TrainingArguments would write into ./trainer_output without one).
REQUIRED_FLAGS = {"output_dir": "the folder the student, its card, results.json and the checkpoints are written to"}
CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")
# The flags the short --help shows, beside the chosen method's own options (those carrying its prefix, experimental
# ones apart); --help_all shows every flag: the recipe's, the shared loss options, all of TrainingArguments.
SHORT_HELP_FLAGS = {
    "teacher", "student", "teacher_label_mapping", "ignore_mismatched_sizes", "license",
    "dataset", "train_split", "eval_split", "image_column", "label_column", "max_train_samples", "max_eval_samples",
    "output_dir", "method", "num_train_epochs", "max_steps", "per_device_train_batch_size", "learning_rate", "bf16",
    "save_steps", "seed", "resume_from_checkpoint", "push_to_hub", "hub_model_id",
}  # fmt: skip
USAGE = (
    "hf-cakd distill --teacher MODEL --dataset DATA [--student MODEL] [--method {methods}] --output_dir DIR [flags]\n"
    "       hf-cakd distill run.yaml   (or run.json: the same flags as keys)\n"
    "       --method X --help: the common flags and X's own options (default method: {default}); --help_all: every "
    "flag (the recipe's, shared and experimental method options, all of TrainingArguments)"
)
DEFAULT_METHOD = DistillationTrainingArguments.method
for dataclass_type, group in {
    ModelArguments: "models",
    DataArguments: "data",
    DistillationTrainingArguments: "training (transformers TrainingArguments, plus --method)",
}.items():
    dataclass_type._argument_group_name = group  # HfArgumentParser's --help section for its flags


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """HfArgumentParser's formatter, stating each default once: not for a flag whose help states it (a method
    option's flag defaults to None, meaning the method's default), nor a None default (not given: unset)."""

    def _get_help_string(self, action):
        states_it = "default" in (action.help or "").lower()
        return action.help if states_it or action.default is None else super()._get_help_string(action)


def _shown(value) -> str:
    return (",".join(map(str, value)) or "none") if isinstance(value, tuple) else str(value)


@functools.cache
def method_option_groups(method: str) -> tuple[type, ...]:
    """``method``'s options as flags: one dataclass per --help section (its options, then its experimental ones).

    Every field defaults to None (not given: the method's default applies) and is converted by the
    method's config; a tuple option (stages, paths) is read as its comma-separated text, and an option whose
    default follows the pair as its text ('auto' or a value).
    """
    config_class = method_class(method).config_class
    hints = typing.get_type_hints(config_class)
    sections: dict[bool, list] = {False: [], True: []}
    for option in dataclasses.fields(config_class):
        typed_by_config = typing.get_origin(hints[option.name]) in (tuple, typing.Union, types.UnionType)
        hint = str if typed_by_config else hints[option.name]
        metadata = {"help": f"{option.metadata['help']} (default: {_shown(option.default)})"}
        if hint is bool:
            metadata.update(nargs="?", const=True)
        flag = (option.name, hint | None, dataclasses.field(default=None, metadata=metadata))
        sections[option.metadata["experimental"]].append(flag)
    titles = {
        False: f"--method {method} options",
        True: f"--method {method}: experimental options (beyond the paper, off by default; docs/method.md)",
    }
    groups = []
    for experimental, flags in sections.items():
        if flags:
            group = dataclasses.make_dataclass(f"{method.title()}Options{len(groups)}", flags)
            group._argument_group_name = titles[experimental]
            groups.append(group)
    return tuple(groups)


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a :class:`UsageError`, exit 2), not the usage text and a
    line, and which takes no abbreviation of a flag (``--learning_rat`` is a typo, not ``--learning_rate``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        missing = [name for name in REQUIRED_FLAGS if f"--{name}" in message]
        if message.startswith("the following arguments are required") and missing:
            raise UsageError(" ".join(f"--{name} DIR is required: {REQUIRED_FLAGS[name]}." for name in missing))
        raise UsageError(message)


class DistillArgumentParser(OneLineErrors, HfArgumentParser):
    """``hf-cakd distill``'s parser: HfArgumentParser with :class:`OneLineErrors`."""


def build_parser(method: str, show_all: bool = False) -> HfArgumentParser:
    methods = ",".join([AUTO_METHOD, *sorted(METHODS)])
    option_groups = method_option_groups(method) if method in METHODS else ()  # auto's method is known later
    parser = DistillArgumentParser(
        (ModelArguments, DataArguments, *option_groups, DistillationTrainingArguments),
        usage=USAGE.format(methods=methods, default=DEFAULT_METHOD),
        formatter_class=HelpFormatter,
    )
    for action in parser._actions:
        action.required = action.required or action.dest in REQUIRED_FLAGS
    if not show_all:
        own = _own_options(method) if method in METHODS else set()
        for action in parser._actions:
            if action.option_strings and action.dest not in SHORT_HELP_FLAGS | own | {"help"}:
                action.help = argparse.SUPPRESS
    return parser


def _own_options(method: str) -> set[str]:
    """``method``'s options that carry its prefix, experimental ones apart: what its short --help lists."""
    config_class = method_class(method).config_class
    experimental = set(config_class.experimental_option_names())
    return {name for name in config_class.option_names() if name.startswith(f"{method}_") and name not in experimental}


def chosen_method(argv: list[str]) -> str:
    """The ``--method`` of a command line, or the default."""
    pre_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # its errors are the main parser's
    pre_parser.add_argument("--method", default=DEFAULT_METHOD)
    return pre_parser.parse_known_args(argv)[0].method


def read_config_file(path: str) -> dict:
    """A run's flags as the keys of a .json/.yaml file; the method's options may sit under its name."""
    if not os.path.isfile(path):
        raise UsageError(f"No config file {path}: pass an existing .yaml/.json file, or the flags themselves.")
    with open(path, encoding="utf-8") as f:
        try:
            keys = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
        except yaml.constructor.ConstructorError as err:  # a tag safe_load builds nothing for (!!python/object...)
            where = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
            raise UsageError(
                f"{path} holds a YAML tag a config file cannot hold ({err.problem}{where}): config files hold plain "
                "values (text, numbers, lists, mappings), never objects. Remove the tag."
            ) from err
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            reason = " ".join(str(err).split())
            language = "JSON" if path.endswith(".json") else "YAML"
            raise UsageError(f"{path} is not valid {language} ({reason}): correct it.") from err
    if not isinstance(keys, dict):
        raise UsageError(f"{path} holds no mapping of flags to values: write one key per flag (e.g. `method: fbt`).")
    method = keys.get("method", DEFAULT_METHOD)
    for name in [key for key in keys if key in METHODS]:
        options = keys.pop(name)
        if name != method or not isinstance(options, dict):
            raise UsageError(
                f"{path} groups options under {name!r}, but the run's method is {method!r}: group {method}'s "
                f"options under `{method}:` (or set `method: {name}`)."
            )
        given_twice = sorted(set(options) & set(keys))
        if given_twice:
            raise UsageError(f"{path} gives {', '.join(given_twice)} both under `{name}:` and at the top: keep one.")
        keys.update(options)
    return keys


def _foreign_options(method: str, names) -> None:
    """Refuse, as a usage error, option names of earlier versions among ``names`` (naming the new ones) and options
    of other methods (naming their methods)."""
    refuse_old_names(method, names)
    every_option = {option for cls in METHODS.values() for option in cls.config_class.option_names()}
    options = [name for name in names if name in every_option]
    if not options:
        return
    if method == AUTO_METHOD:
        owners = option_owners(options)
        what, it = ("an option", "it") if len(options) == 1 else ("options", "them")
        whose = " or ".join(filter(None, (", ".join(owners[:-1]), owners[-1])))
        raise UsageError(
            f"{', '.join('--' + name for name in options)}: {what} of {whose}; --method auto (the "
            f"default) picks the method by the student's family, so pass --method {owners[0]} with {it}."
        )
    refuse_unknown_options(method, options)


def _typed(parser: HfArgumentParser, keys: dict, path: str) -> dict:
    """``keys`` with each text value converted as its flag's would be (``"false"``: False, ``"3"``: 3); a key
    that names no flag is refused naming the file.

    ``parse_dict`` keeps values as they are, so a quoted ``"false"`` would switch a flag on and a quoted
    number fail deep inside training; a value its flag cannot take is refused naming the key.
    """
    actions = {action.dest: action for action in parser._actions}
    unknown = [name for name in keys if name not in actions]
    if unknown:
        raise UsageError(f"{path}: unknown keys {', '.join(unknown)}: `hf-cakd distill --help` lists the flags they name.")
    missing = [action.dest for action in parser._actions if action.required and action.dest not in keys]
    if missing:
        raise UsageError(" ".join(f"{path} has no {name}: add `{name}: DIR`, {REQUIRED_FLAGS[name]}." for name in missing))
    typed = dict(keys)
    for name, value in keys.items():
        action = actions[name]
        if not isinstance(value, str) or action.type in (None, str) or not callable(action.type):
            continue
        try:
            typed[name] = action.type(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            raise UsageError(f"{path}: {name}: {value!r} is not a valid value ({err}).") from err
    return typed


def parse_distill_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, DistillationTrainingArguments]:
    """Flags, or one config file, into the three argument dataclasses; the method's options join ``method_config``."""
    show_all = HELP_ALL_FLAG in argv
    from_file = len(argv) == 1 and argv[0].endswith(CONFIG_FILE_SUFFIXES)
    keys = read_config_file(argv[0]) if from_file else None
    method = keys.get("method", DEFAULT_METHOD) if from_file else chosen_method(argv)
    # An unknown method is refused by the parser (--method's choices) or by method_config (a config file).
    parser = build_parser(method, show_all)
    if show_all:
        parser.print_help()
        raise SystemExit(0)
    try:
        if from_file:
            _foreign_options(method, keys)
            model_args, data_args, *options, training_args = parser.parse_dict(_typed(parser, keys, argv[0]))
        else:
            *parsed, unused = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
            _foreign_options(method, [flag[2:].split("=")[0].replace("-", "_") for flag in unused if flag.startswith("--")])
            if unused:
                listing = "hf-cakd distill" + ("" if method == AUTO_METHOD else f" --method {method}") + " --help"
                raise UsageError(f"Unknown flags {' '.join(unused)}: `{listing}` lists them.")
            model_args, data_args, *options, training_args = parsed
        given = {name: value for group in options for name, value in dataclasses.asdict(group).items() if value is not None}
        if training_args.method != AUTO_METHOD:
            training_args.method_config = method_config(
                training_args.method, {**training_args.method_config, **given}
            ).to_dict()
    except (ValueError, TypeError) as err:  # raised by the dataclasses' checks of their values
        raise UsageError(str(err)) from err
    return model_args, data_args, training_args


def setup_logging(training_args=None) -> None:
    """What a command-line run shows: every library's records at INFO in one format, transformers' and
    huggingface_hub's warnings once each, not every transformers INFO line; :func:`hf_cakd.distill` then sets
    hf_cakd's and the Trainer's own plan and progress to the run's level (``pipeline.log_the_run``)."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    # huggingface_hub prints through a handler of its own and, unlike transformers, also passes records on to
    # ours: dropping its handler leaves one line per warning, formatted as every other line of the run.
    hub_logger = logging.getLogger(huggingface_hub.__name__)
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)
    logging.getLogger("huggingface_hub.repocard").addFilter(_not_a_card_without_metadata)
    if training_args is not None and (training_args.disable_tqdm or not training_args.should_log):
        # Loading and saving weights show bars of their own: they follow --disable_tqdm, on the main process only.
        transformers.utils.logging.disable_progress_bar()


def _not_a_card_without_metadata(record: logging.LogRecord) -> bool:
    """False for the warning ``datasets`` triggers on a local dataset folder whose README.md has no metadata
    block: nothing a run does depends on it (docs/architecture.md, "Upstream workarounds").

    A log record has no type: its text tells it (huggingface_hub 2.5.0, repocard.py), and
    tests/test_upstream_workarounds.py fails when it changes."""
    return not record.getMessage().startswith("Repo card metadata block was not found")


def distill_main(argv: list[str] | None = None, callbacks: list | None = None) -> dict:
    """``hf-cakd distill``: parse ``argv`` and run :func:`hf_cakd.distill`."""
    model_args, data_args, training_args = parse_distill_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(training_args)
    return distill(model_args, data_args, training_args, callbacks=callbacks)


def push_main(argv: list[str]) -> None:
    """``hf-cakd push OUTPUT_DIR --repo_id ID``: push a finished output folder (student at the top, then its card)."""
    parser = OneLineErrors(prog="hf-cakd push", description=push_main.__doc__)
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


# name -> (its function, what it does, in one line of `hf-cakd --help`)
COMMANDS = {
    "distill": (distill_main, "Distil a teacher into a student on an image-classification dataset."),
    "push": (push_main, "Push a folder hf-cakd distill wrote to the Hub (the student at the top, its card last)."),
}


def main_help() -> str:
    """``hf-cakd --help``: the usage and a line per command."""
    lines = ["usage: hf-cakd <command> [flags]", "", "commands:"]
    lines += [f"  {name:9s}{summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join([*lines, "", "hf-cakd <command> --help lists a command's flags."])


def main(argv: list[str] | None = None) -> None:
    """The ``hf-cakd`` console entry point; exit codes as hf_cakd.errors documents (docs/operations.md, "Exit codes")."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(main_help())
        raise SystemExit(0)
    if not argv or argv[0] not in COMMANDS:
        given = f"Unknown command {argv[0]!r}. " if argv else ""
        print(f"error: {given}Pass one of: {', '.join(COMMANDS)} (hf-cakd --help says what each does).", file=sys.stderr)
        raise SystemExit(2)
    run_cli(COMMANDS[argv[0]][0], argv[1:])
