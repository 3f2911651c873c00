"""Turn a model spec into an image classifier whose label space matches the dataset.

A spec is one of:

- a Hub id or a local ``save_pretrained`` directory (``google/vit-base-patch16-224``,
  ``timm/resnet18.a1_in1k``, ``./my-teacher``): loaded with
  ``AutoModelForImageClassification.from_pretrained``;
- ``timm:<architecture>`` (``timm:resnet18``): a freshly initialised timm model, wrapped as
  transformers' ``TimmWrapperForImageClassification`` so it saves and loads the transformers way;
- a ``config.json`` path, a directory holding a config but no weights, or a
  ``PretrainedConfig``: a model built from scratch with that config (a directory may also hold
  the ``preprocessor_config.json`` its inputs should follow).

Every model is returned in the transformers shape (``model.config`` with ``id2label``), so the
distilled student loads with ``AutoModelForImageClassification`` without hf_cakd installed.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import timm
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperConfig,
)
from transformers.models.timm_wrapper.modeling_timm_wrapper import TimmWrapperPreTrainedModel
from transformers.utils import CONFIG_NAME

from .label_mapping import map_labels, restrict_classifier

logger = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


class LabelMismatchError(ValueError):
    """The checkpoint's label space is not the dataset's."""


def _labels_are_generic(id2label: dict) -> bool:
    return all(_GENERIC_LABEL.match(str(name)) for name in id2label.values())


def _label_config(id2label: dict[int, str] | None) -> dict[str, Any]:
    if id2label is None:
        return {}
    id2label = {int(i): str(name) for i, name in id2label.items()}
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}


def _from_config(config: PretrainedConfig, id2label: dict[int, str] | None) -> PreTrainedModel:
    for key, value in _label_config(id2label).items():
        setattr(config, key, value)
    model = AutoModelForImageClassification.from_config(config)
    if isinstance(model, TimmWrapperPreTrainedModel):
        _restore_timm_init(model)
    return model


def _restore_timm_init(model: TimmWrapperPreTrainedModel) -> None:
    """Give a timm model built from scratch timm's own initialisation back.

    transformers' generic ``_init_weights`` redraws every convolution and linear layer of the
    wrapped model from N(0, 0.02) and resets every norm: a ViT's patch embedding starts 4x smaller
    than timm's (std 0.02 against 0.083 at patch 4), a ResNet's convolutions lose their He
    initialisation and its zero-initialised last BatchNorm of each block. A 32 px ViT trained from
    scratch lost points of top-1 to the same ViT as timm builds it (benchmarks/accuracy/experiments.md,
    "Pipeline parity"). Non-persistent buffers are not in the state dict and stay as built.
    """
    config = model.config
    fresh = timm.create_model(
        config.architecture, pretrained=False, num_classes=config.num_labels, **(config.model_args or {})
    )
    model.timm_model.load_state_dict(fresh.state_dict())


def _describe(id2label: dict) -> str:
    names = list(id2label.values())
    shown = ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} labels ({shown})"


def _check_labels(
    model: PreTrainedModel, spec: str, id2label: dict[int, str], replace_head: bool, label_mapping, **kwargs
):
    """Return a model whose labels are ``id2label``: adopt, map, replace the head when asked, or stop."""
    have = {int(i): str(n) for i, n in model.config.id2label.items()}
    want = {int(i): str(n) for i, n in id2label.items()}
    if have == want:
        return model
    if len(have) == len(want) and _labels_are_generic(have):
        # A head trained on this dataset but saved without names: same classes, name them.
        model.config.update(_label_config(want))
        return model
    if label_mapping is not None:
        explicit = None if label_mapping == "by_name" else label_mapping
        return restrict_classifier(model, map_labels(have, want, explicit), want)
    if not replace_head:
        raise LabelMismatchError(
            f"The checkpoint {spec!r} predicts {_describe(have)} but the dataset has {_describe(want)}. Either "
            "map each dataset label to one of the checkpoint's (--teacher_label_mapping by_name, or a JSON object "
            "{dataset label: checkpoint label}; label_mapping=... in Python), or fine-tune that model on this "
            f"dataset first (python scripts/distill.py --method none --student {spec} --ignore_mismatched_sizes "
            "--dataset <data> --output_dir <dir>) and pass the result, or pass --ignore_mismatched_sizes "
            "(replace_head=True) to replace its classification head with a new, randomly initialised one."
        )
    logger.warning("Replacing the classification head of %s: %s -> %s", spec, _describe(have), _describe(want))
    return AutoModelForImageClassification.from_pretrained(
        spec, ignore_mismatched_sizes=True, **_label_config(want), **kwargs
    )


def _is_config_only(spec: str) -> bool:
    if os.path.isfile(spec):
        return spec.endswith(".json")
    if not os.path.isfile(os.path.join(spec, CONFIG_NAME)):
        return False
    return not any(name.endswith((".safetensors", ".bin")) for name in os.listdir(spec))


def load_classifier(
    spec: str | PretrainedConfig,
    id2label: dict[int, str] | None = None,
    *,
    replace_head: bool = False,
    label_mapping: str | dict[str, str] | None = None,
    model_args: dict[str, Any] | None = None,
    **from_pretrained_kwargs,
) -> PreTrainedModel:
    """Load or build the classifier ``spec`` describes, with the dataset's labels ``id2label``.

    ``model_args`` are passed to ``timm.create_model`` for ``timm:`` specs (for example
    ``{"img_size": 32, "patch_size": 4}``). A pretrained checkpoint whose labels differ from
    ``id2label`` raises :class:`LabelMismatchError` unless ``label_mapping`` (``"by_name"``, or
    ``{dataset label: checkpoint label}`` for names that differ) keeps the matching classifier
    rows, or ``replace_head`` puts a new head on.
    """
    if isinstance(spec, PretrainedConfig):
        return _from_config(spec, id2label)
    if spec.startswith(TIMM_PREFIX):
        architecture = spec[len(TIMM_PREFIX) :]
        return _from_config(TimmWrapperConfig(architecture=architecture, model_args=model_args), id2label)
    if model_args:
        raise ValueError(f"model_args only apply to 'timm:<architecture>' specs, not {spec!r}")
    if _is_config_only(spec):
        logger.info("%s holds a config but no weights: building the model from scratch.", spec)
        return _from_config(AutoConfig.from_pretrained(spec), id2label)
    model = AutoModelForImageClassification.from_pretrained(spec, **from_pretrained_kwargs)
    if id2label is None:
        return model
    return _check_labels(model, spec, id2label, replace_head, label_mapping, **from_pretrained_kwargs)


def load_image_processor(spec: str | PretrainedConfig):
    """The image processor saved with ``spec``, or None (transforms then come from the model)."""
    if not isinstance(spec, str) or spec.startswith(TIMM_PREFIX) or spec.endswith(".json"):
        return None
    try:
        return AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError) as err:
        logger.info("No image processor for %s (%s); using the model's own data config.", spec, err)
        return None
