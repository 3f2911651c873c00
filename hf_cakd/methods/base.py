"""What every distillation method shares: its config, its inputs, the supervised term, the registry.

A method is one file: a :class:`MethodConfig` subclass holding its options (each with its help
text) and a :class:`DistillationMethod` subclass registered with :func:`register_method`. The
CLI, the model card, the benchmarks and the tests read methods and options from ``METHODS``
(docs/architecture.md shows a new method with one option).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..backbones import NUM_STAGES, StagedBackbone, StagedOutput
from ..backbones.base import STAGE_SPLITS

METHODS: dict[str, type["DistillationMethod"]] = {}
# The method's own trainable parts that are not PreTrainedModels, beside the student in a checkpoint.
METHOD_STATE_NAME = "distillation_method.safetensors"


@dataclass
class MethodConfig:
    """Options every method has; a method's config subclasses this and adds its own."""

    ce_weight: float = field(default=1.0, metadata={"help": "Weight of the supervised cross-entropy term(s)."})
    stage_split: str = field(
        default="even",
        metadata={
            "help": "How an isotropic model's blocks (ViT, Mixer) form the four stages the method taps: 'even' "
            "(12 blocks -> 3/3/3/3) or 'ofa' (OFA-KD's boundaries, 12 -> 2/2/6/2: a small last stage, so FBT's "
            "assistant re-runs less of the student). Hierarchical models keep their stages."
        },
    )

    def __post_init__(self):
        if self.stage_split not in STAGE_SPLITS:
            raise ValueError(f"stage_split must be one of {STAGE_SPLITS}, got {self.stage_split!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def parse_stages(text: str, option: str) -> tuple[int, ...]:
    """Stage numbers from an option such as ``"1,2,3"`` (1-based, sorted, no repeats); ``""``: none."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not all(part.isdigit() and 1 <= int(part) <= NUM_STAGES for part in parts):
        raise ValueError(f"{option} takes comma-separated stage numbers 1-{NUM_STAGES} (e.g. '1,2,3') or '', got {text!r}")
    stages = sorted({int(part) for part in parts})
    if len(stages) != len(parts):
        raise ValueError(f"{option} names a stage twice: {text!r}")
    return tuple(stages)


def num_labels_of(view: StagedBackbone) -> int:
    """The number of classes of a view's classifier (a transformers config's, or a bare timm model's)."""
    config = getattr(view.model, "config", None)
    return config.num_labels if config is not None else view.model.num_classes


def register_method(name: str, title: str) -> Callable[[type], type]:
    """Register a :class:`DistillationMethod` under ``name`` (``--method name``); ``title`` names it in cards."""

    def decorator(cls: type) -> type:
        cls.name, cls.title = name, title
        METHODS[name] = cls
        return cls

    return decorator


def method_class(name: str) -> type["DistillationMethod"]:
    if name not in METHODS:
        raise ValueError(f"Unknown distillation method {name!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def method_config(name: str, options: "MethodConfig | dict[str, Any] | None" = None) -> MethodConfig:
    """The typed config of method ``name`` from a config, a dict of options, or None (defaults)."""
    config_class = method_class(name).config_class
    if isinstance(options, MethodConfig):
        if not isinstance(options, config_class):
            raise TypeError(f"--method {name} takes a {config_class.__name__}, got a {type(options).__name__}.")
        return options
    options = dict(options or {})
    unknown = sorted(set(options) - set(config_class.option_names()))
    if unknown:
        raise ValueError(
            f"{', '.join('--' + o for o in unknown)} do(es) not apply to --method {name}; its options are "
            f"{', '.join('--' + o for o in config_class.option_names())}."
        )
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
    papers: ClassVar[tuple[str, ...]] = ()  # ids of hf_cakd.hub.PAPERS the student's card cites
    requires_teacher: ClassVar[bool] = True

    def __init__(self, student: StagedBackbone, teacher: StagedBackbone | None, config: MethodConfig):
        super().__init__()
        if self.requires_teacher and teacher is None:
            raise ValueError(f"The {self.name!r} method distils from a teacher: pass teacher_model.")
        self.__dict__["student_view"] = student
        self.__dict__["teacher_view"] = teacher
        self.config = config
        self.label_smoothing = 0.0  # the trainer sets --label_smoothing_factor
        # Where training stands, set by the trainer before each training step (set_progress).
        self.global_step, self.max_steps = 0, None

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the labels (smoothed by ``--label_smoothing_factor``), times ``ce_weight``."""
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
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
            part.save_pretrained(os.path.join(directory, name), state_dict=part_state)

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
