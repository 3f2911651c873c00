"""What every distillation method shares: its config, its inputs, the supervised term, the registry.

A method is one file: a :class:`MethodConfig` subclass holding its options (each declared with
:func:`option`, its help text written for users) and a :class:`DistillationMethod` subclass
registered with :func:`register_method`. The CLI, the model card, the benchmarks and the tests
read methods and options from ``METHODS`` (docs/architecture.md shows a new method with one option).
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Literal

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.hf_argparser import string_to_bool

from ..backbones import NUM_STAGES, StagedBackbone, StagedOutput
from ..backbones.base import STAGE_SPLITS
from .renamed import refuse_old_names

METHODS: dict[str, type["DistillationMethod"]] = {}
# The method's own trainable parts that are not PreTrainedModels, beside the student in a checkpoint.
METHOD_STATE_NAME = "distillation_method.safetensors"

# Typed option values: a choice is a Literal, a list of choices a tuple of them; an option whose default
# follows the pair (the teacher and the student) takes ``X | ByPair`` and defaults to "auto", which the method's
# ``for_pair`` resolves for its pair (docs/method.md, "'auto': follows the pair").
BY_PAIR = "auto"
ByPair = Literal[BY_PAIR]
BY_PAIR_HELP = f"'{BY_PAIR}': follows the pair (docs/method.md)."
Stage = Literal[tuple(range(1, NUM_STAGES + 1))]
StageSplit = Literal[STAGE_SPLITS]
STAGE_SPLIT_HELP = (
    "How an isotropic model's blocks (ViT, Mixer) form the four stages the method taps: 'even' (12 blocks -> "
    "3/3/3/3) or 'ofa' (OFA-KD's boundaries, 12 -> 2/2/6/2, a small last stage). Hierarchical models keep their stages."
)


def option(default: Any, help: str, *, experimental: bool = False) -> Any:
    """A method option: its default and its ``--help`` text, which is user documentation (the evidence
    behind a default belongs in docs/method.md); an option that defaults to 'auto' (``ByPair``) gets
    ``BY_PAIR_HELP`` after it. ``experimental``: beyond the published method, off by default, under
    evaluation; ``--help`` and the card mark it so."""
    if default == BY_PAIR:
        help = f"{help} {BY_PAIR_HELP}"
    return field(default=default, metadata={"help": help, "experimental": experimental})


def option_text(value: Any) -> str:
    """An option's value as a flag takes it: a list comma-separated, true/false, anything else as text; '' when empty."""
    if isinstance(value, bool):
        return str(value).lower()
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text or "''"


def _choice(name: str, choices: tuple, value: Any) -> Any:
    """``value`` as one of ``choices``, also from its text (``"2"`` for 2) or a config file's true/false."""
    if isinstance(value, bool):
        value = str(value).lower()
    for choice in choices:
        if str(value).strip() == str(choice):
            return choice
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _convert(name: str, hint: Any, value: Any) -> Any:
    """An option's value in its declared type, from the form a flag, a config file or a JSON dict gives it."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | ByPair
        if isinstance(value, str) and value.strip() == BY_PAIR:
            return BY_PAIR
        (value_hint,) = [arg for arg in typing.get_args(hint) if arg != ByPair]
        return _convert(name, value_hint, value)
    if typing.get_origin(hint) is Literal:
        return _choice(name, typing.get_args(hint), value)
    if typing.get_origin(hint) is tuple:  # tuple[Choice, ...]: "1,2,3", [1, 2, 3] or (1, 2, 3); "" for none
        choices = typing.get_args(typing.get_args(hint)[0])
        items = [item for item in value.split(",") if item.strip()] if isinstance(value, str) else list(value)
        try:
            chosen = [_choice(name, choices, item) for item in items]
        except ValueError:
            raise ValueError(f"{name} is a comma list of {', '.join(map(str, choices))} (or empty), got {value!r}") from None
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"{name} names an entry twice: {value!r}")
        return tuple(sorted(chosen, key=choices.index))
    if hint is bool and isinstance(value, str):
        try:
            return string_to_bool(value)
        except Exception:
            raise ValueError(f"{name} is true or false, got {value!r}") from None
    if hint in (int, float) and isinstance(value, str):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{name} takes {'an integer' if hint is int else 'a number'}, got {value!r}") from None
    return value


@dataclass
class MethodConfig:
    """Options every method has; a method's config subclasses this and adds its own.

    Options are typed (numbers, flags, ``Literal`` choices, tuples of choices such as stages). Each
    is also taken in the form a flag, a config file or a JSON dict gives it (``"1,2,3"`` or
    ``[1, 2, 3]`` for stages, ``"true"`` for a flag, ``"0.5"`` for a number) and converted here;
    :meth:`to_dict` gives the JSON form back (tuples as lists). Options that several methods share
    live in one option group (a ``MethodConfig`` subclass such as ``OFALossOptions``) that each of
    their configs inherits, so each option has one meaning and one help text.
    """

    ce_weight: float = option(1.0, "Weight of the supervised cross-entropy term(s).")
    stage_split: StageSplit = option("even", STAGE_SPLIT_HELP)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for option_field in fields(self):
            setattr(self, option_field.name, _convert(option_field.name, hints[option_field.name], getattr(self, option_field.name)))
        for name in self.option_names():  # by naming convention: a loss weight is >= 0, a width is >= 1
            value = getattr(self, name)
            if not isinstance(value, (int, float)):
                continue
            if name.endswith("_weight") and value < 0:
                raise ValueError(f"{name} is a loss weight, 0 or more (0 turns the term off), got {value}")
            if name.endswith("_dim") and value < 1:
                raise ValueError(f"{name} is a layer width, a positive integer, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Every option in JSON form (``distillation_config.json``, ``results.json``)."""
        return {f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value for f in fields(self)}

    def for_pair(self, teacher: StagedBackbone | None, student: StagedBackbone) -> "MethodConfig":
        """This config with its options whose default follows the pair (``ByPair``, "auto") set for it; a
        method that has such options overrides this."""
        return self

    def changed_options(self, defaults: "MethodConfig | None" = None) -> dict[str, Any]:
        """The options (JSON form) that differ from ``defaults`` (the method's own by default)."""
        defaults = (defaults or type(self)()).to_dict()
        return {name: value for name, value in self.to_dict().items() if value != defaults[name]}

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def experimental_option_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.metadata["experimental"]]


def num_labels_of(view: StagedBackbone) -> int:
    """The number of classes of a view's classifier (a transformers config's, or a bare timm model's)."""
    config = getattr(view.model, "config", None)
    return config.num_labels if config is not None else view.model.num_classes


def register_method(name: str, title: str) -> Callable[[type], type]:
    """Register a :class:`DistillationMethod` under ``name`` (``--method name``); ``title`` names it in cards."""

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, DistillationMethod)):
            raise TypeError(f"register_method({name!r}) decorates a DistillationMethod subclass, got {cls!r}.")
        cls.name, cls.title = name, title
        METHODS[name] = cls
        return cls

    return decorator


def method_class(name: str) -> type["DistillationMethod"]:
    if name not in METHODS:
        raise ValueError(f"Unknown distillation method {name!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def option_owners(options) -> list[str]:
    """The registered methods that have at least one of ``options``, by name."""
    return sorted({name for name, cls in METHODS.items() if set(options) & set(cls.config_class.option_names())})


def refuse_unknown_options(name: str, options) -> None:
    """Refuse, in one line, option names that ``--method name`` does not have: an earlier version's with its new
    name, another method's saying whose it is."""
    own = method_class(name).config_class.option_names()
    unknown = sorted(set(options) - set(own))
    if not unknown:
        return
    refuse_old_names(name, unknown)
    owners = option_owners(unknown)
    whose = f" ({'an option' if len(unknown) == 1 else 'options'} of {', '.join(owners)})" if owners else ""
    raise ValueError(
        f"{', '.join('--' + o for o in unknown)} {'does' if len(unknown) == 1 else 'do'} not apply to --method "
        f"{name}{whose}; its options are "
        f"{', '.join('--' + o for o in own)}."
    )


def method_config(name: str, options: "MethodConfig | dict[str, Any] | None" = None) -> MethodConfig:
    """The typed config of method ``name`` from a config, a dict of options, or None (defaults)."""
    config_class = method_class(name).config_class
    if isinstance(options, MethodConfig):
        if not isinstance(options, config_class):
            raise TypeError(f"--method {name} takes a {config_class.__name__}, got a {type(options).__name__}.")
        return options
    options = dict(options or {})
    refuse_unknown_options(name, options)
    return config_class(**options)


class DistillationMethod(nn.Module):
    """A recipe: which features it taps, which losses it adds, which extra parts it trains.

    The module holds only the method's own trainable parts (projectors, branches, bridge,
    temperatures). The student's and teacher's staged views are kept by reference so that their
    parameters are owned, saved and synchronised once, by the student and the teacher.

    ``forward`` returns the named, weighted loss terms; the total loss is their sum. The trainer
    talks to a method only through ``forward`` and the hooks below.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    papers: ClassVar[tuple[str, ...]] = ()  # ids of hf_cakd.run.hub.PAPERS the student's card cites
    requires_teacher: ClassVar[bool] = True
    # The names of the classifiers evaluation_logits returns (evaluated beside the student; none: skipped).
    evaluated_classifiers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, student: StagedBackbone, teacher: StagedBackbone | None, config: MethodConfig):
        super().__init__()
        if self.requires_teacher and teacher is None:
            raise ValueError(f"The {self.name!r} method distils from a teacher: pass teacher_model.")
        self.__dict__["student_view"] = student
        self.__dict__["teacher_view"] = teacher
        given = config.to_dict()
        self.config = config.for_pair(teacher, student)
        # The options the pair set ("auto" given): the log and the card name them with their values.
        self.options_set_by_pair = {
            name: value for name, value in self.config.to_dict().items() if given[name] == BY_PAIR != value
        }
        self.label_smoothing = 0.0  # the trainer sets --label_smoothing_factor
        # Where training stands, set by the trainer before each training step (set_progress).
        self.global_step, self.max_steps = 0, None

    @classmethod
    def cited_papers(cls, changed_options: dict[str, Any]) -> tuple[str, ...]:
        """Ids of hf_cakd.run.hub.PAPERS the card cites for a run whose options differ from the defaults as given."""
        return cls.papers

    def changed_options(self) -> dict[str, Any]:
        """The options (JSON form) that differ from the method's defaults for this pair: what the card lists."""
        return self.config.changed_options(type(self.config)().for_pair(self.teacher_view, self.student_view))

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the labels (smoothed by ``--label_smoothing_factor``), times ``ce_weight``.

        ``labels`` are class indices ``(B,)``, or target distributions ``(B, C)``: Mixup/CutMix's mixed
        targets, which timm's ``Mixup`` has already smoothed.
        """
        smoothing = self.label_smoothing if labels.dim() == 1 else 0.0
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        return self.config.ce_weight * loss

    def forward(
        self, student: StagedOutput, teacher: StagedOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- hooks the trainer calls ----

    def set_progress(self, global_step: int, max_steps: int | None = None) -> None:
        """Called by the trainer before each training forward: optimizer steps done so far, and planned.

        Methods with schedules (warm-ups) read ``self.global_step``; it stays 0 when the method is
        run outside :class:`DistillationTrainer` and nobody calls this.
        """
        self.global_step, self.max_steps = int(global_step), max_steps

    def no_weight_decay_names(self) -> set[str]:
        """Names (within this module) of parameters weight decay must not touch."""
        return set()

    def log_values(self) -> dict[str, float]:
        """Values to log beside the loss terms (learned temperatures, schedules)."""
        return {}

    def evaluation_logits(self, student: StagedOutput, teacher: StagedOutput | None) -> dict[str, torch.Tensor]:
        """Logits of the method's own classifiers (FBT's assistant), to be evaluated like the student."""
        return {}

    def pretrained_parts(self) -> dict[str, PreTrainedModel]:
        """Parts saved as their own ``save_pretrained`` folder (named by attribute), not in the method file."""
        return {name: child for name, child in self.named_children() if isinstance(child, PreTrainedModel)}

    def save_parts(self, directory: str, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write every trainable part once: PreTrainedModel parts as folders, the rest in one file.

        ``state_dict`` (this module's, e.g. gathered by FSDP) defaults to ``self.state_dict()``.
        """
        state_dict = self.state_dict() if state_dict is None else state_dict
        parts = self.pretrained_parts()
        own = {k: v.contiguous() for k, v in state_dict.items() if k.split(".", 1)[0] not in parts}
        if own:
            safetensors.torch.save_file(own, os.path.join(directory, METHOD_STATE_NAME), metadata={"format": "pt"})
        for name, part in parts.items():
            prefix = f"{name}."
            part_state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            # Keys as the modules name them (transformers would rename a nested model's to its legacy checkpoint
            # format), so that load_parts reads them back as they are.
            part.save_pretrained(os.path.join(directory, name), state_dict=part_state, save_original_format=False)

    def load_parts(self, directory: str) -> None:
        """Restore what :meth:`save_parts` wrote; a missing or partial part is an error naming the file."""
        parts = self.pretrained_parts()
        state: dict[str, torch.Tensor] = {}
        own = [k for k in self.state_dict() if k.split(".", 1)[0] not in parts]
        if own:
            state.update(safetensors.torch.load_file(_required(directory, METHOD_STATE_NAME, self.name)))
        for name in parts:
            part_file = _required(directory, os.path.join(name, "model.safetensors"), self.name)
            state.update({f"{name}.{k}": v for k, v in safetensors.torch.load_file(part_file).items()})
        self.load_state_dict(state, strict=True)


def _required(directory: str, relative: str, method: str) -> str:
    path = os.path.join(directory, relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} lacks {relative} for method {method!r}: it was not written by that method.")
    return path
