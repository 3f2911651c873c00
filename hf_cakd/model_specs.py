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

A model that cannot be loaded (a truncated weights file, a config that does not match its
weights, an unknown architecture, a path that does not exist) raises
:class:`~hf_cakd.errors.InputError` naming the flag, the file and the fix; so does one that would
run code to load: a pickled weights file torch's safe loader refuses, or a config naming code of its
own (``auto_map``), which is never run (:mod:`hf_cakd.safe_loading`). One the Hub cannot deliver
(not cached while offline, not found, gated, the network failed) raises
:class:`~hf_cakd.hub_errors.HubAccessError`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import timm
import transformers
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, HTTPError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperConfig,
)
from transformers.models.timm_wrapper.modeling_timm_wrapper import TimmWrapperPreTrainedModel
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from .errors import DistillationError, InputError, UsageError
from .hub_errors import HubAccessError, hub_failure
from .label_mapping import map_labels, restrict_classifier
from .safe_loading import NO_REMOTE_CODE, REFUSED_PICKLE, needs_remote_code, torch_file_problem

logger = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
WEIGHTS_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
# Weights that do not fit their config come as a bare RuntimeError, told apart only by its message
# (transformers 5.25.0, utils/loading_report.py: "You set `ignore_mismatched_sizes` to `False`..." and, under
# DeepSpeed ZeRO-3, torch 2.14.1's load_state_dict "size mismatch for ..."); tests/test_upstream_messages.py
# fails when either message changes.
_SHAPE_MISMATCH = ("ignore_mismatched_sizes", "size mismatch")


class LabelMismatchError(InputError, ValueError):
    """The checkpoint's label space is not the dataset's."""


def _labels_are_generic(id2label: dict) -> bool:
    return all(_GENERIC_LABEL.match(str(name)) for name in id2label.values())


def label_fields(id2label: Mapping | None) -> dict[str, Any]:
    """The config fields that name a classifier's labels: ``num_labels``, ``id2label``, ``label2id``."""
    if id2label is None:
        return {}
    id2label = {int(i): str(name) for i, name in id2label.items()}
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}


def _from_config(config: PretrainedConfig, id2label: dict[int, str] | None) -> PreTrainedModel:
    for key, value in label_fields(id2label).items():
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
    scratch lost points of top-1 to the same ViT as timm builds it (docs/architecture.md, "Resize and
    crop rules"). Non-persistent buffers are not in the state dict and stay as built. An upstream workaround, with a
    canary that says when to remove it (docs/architecture.md, "Upstream workarounds").
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
    model: PreTrainedModel,
    spec: str,
    id2label: dict[int, str],
    replace_head: bool,
    label_mapping,
    role: str | None = None,
    **kwargs,
):
    """Return a model whose labels are ``id2label``: adopt, map, replace the head when asked, or stop."""
    have = {int(i): str(n) for i, n in model.config.id2label.items()}
    want = {int(i): str(n) for i, n in id2label.items()}
    if have == want:
        return model
    if len(have) == len(want) and _labels_are_generic(have):
        # A head trained on this dataset but saved without names: same classes, name them.
        model.config.update(label_fields(want))
        return model
    if label_mapping is not None:
        explicit = None if label_mapping == "by_name" else label_mapping
        return restrict_classifier(model, map_labels(have, want, explicit), want)
    if not replace_head:
        raise LabelMismatchError(
            f"The checkpoint {spec!r} predicts {_describe(have)} but the dataset has {_describe(want)}. "
            + _label_mismatch_choices(spec, role)
        )
    logger.warning("Replacing the classification head of %s: %s -> %s", spec, _describe(have), _describe(want))
    # The labels alone: a num_labels beside them is checked against the saved config's labels, and warned of.
    return AutoModelForImageClassification.from_pretrained(
        spec, ignore_mismatched_sizes=True, id2label=want, label2id={name: i for i, name in want.items()}, **kwargs,
        **NO_REMOTE_CODE,
    )


def _label_mismatch_choices(spec: str, role: str | None) -> str:
    """What a label mismatch can be fixed with: a teacher is mapped or fine-tuned, a student gets a new head."""
    fine_tune = (
        f"fine-tune that model on this dataset first (python scripts/distill.py --method none --student {spec} "
        "--ignore_mismatched_sizes --dataset <data> --output_dir <dir>) and pass the result"
    )
    mapping = "{dataset label: checkpoint label}"
    if role == "teacher":
        return (
            "Either map each dataset label to one of the teacher's (--teacher_label_mapping by_name, or a JSON object "
            f"{mapping}), or {fine_tune} as --teacher."
        )
    if role == "student":
        return (
            "Pass --ignore_mismatched_sizes to replace the student's classification head with a new, randomly "
            "initialised one for the dataset's labels."
        )
    return (
        f"Either map each dataset label to one of the checkpoint's (--teacher_label_mapping by_name, or a JSON object "
        f"{mapping}; label_mapping=... in Python), or {fine_tune}, or pass --ignore_mismatched_sizes "
        "(replace_head=True) to replace its classification head with a new, randomly initialised one."
    )


def _is_config_only(spec: str) -> bool:
    if os.path.isfile(spec):
        return spec.endswith(".json")
    if not os.path.isfile(os.path.join(spec, CONFIG_NAME)):
        return False
    return not any(name.endswith((".safetensors", ".bin")) for name in os.listdir(spec))


def missing_weights(spec: str) -> str | None:
    """Why ``spec`` builds a model without trained weights (from scratch), or None when it loads weights."""
    if spec.startswith(TIMM_PREFIX):
        architecture = spec.removeprefix(TIMM_PREFIX)
        return (
            f"{spec} builds timm's {architecture} from scratch (timm:<name> loads no weights; timm's trained "
            f"weights are Hub ids, timm/{architecture}.<tag>: timm.list_pretrained('{architecture}*') lists them)"
        )
    if _is_config_only(spec):
        what = "is a config file" if os.path.isfile(spec) else f"holds {CONFIG_NAME} but no weights file"
        return f"{spec} {what} ({' or '.join(WEIGHTS_NAMES)})"
    return None


def refuse_folder_without_config(spec: str, role: str | None) -> None:
    """Stop on a local folder that holds no ``config.json``, naming what it holds instead."""
    if not os.path.isdir(spec) or os.path.isfile(os.path.join(spec, CONFIG_NAME)):
        return
    names = sorted(os.listdir(spec))
    holds = f"it holds {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}" if names else "it is empty"
    raise InputError(
        f"{_who(spec, role)}: the folder has no {CONFIG_NAME} ({holds}). Pass a folder saved with save_pretrained "
        f"(its {CONFIG_NAME} beside the weights), a Hub model id, a config.json, or timm:<architecture>."
    )


def _model_file(spec: str, names: tuple[str, ...], hub_kwargs: dict) -> str | None:
    """The first of ``names`` that ``spec`` has: in its local folder, else in the Hub cache."""
    for name in names:
        if os.path.isdir(spec):
            path = os.path.join(spec, name)
        else:
            try:
                path = try_to_load_from_cache(
                    spec, name, cache_dir=hub_kwargs.get("cache_dir"), revision=hub_kwargs.get("revision")
                )
            except HFValidationError:  # neither a folder nor a Hub id
                return None
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def is_hub_id(spec: str | None) -> bool:
    """Whether ``spec`` names a Hub repository: a valid repo id that is neither a local path nor a ``timm:`` name."""
    if not spec or spec.startswith(TIMM_PREFIX) or os.path.exists(spec):
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _json_keys(path: str | None) -> dict:
    """The keys of a JSON file (a config.json, a weights index), or {} when there is none or it is no JSON object."""
    try:
        keys = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return keys if isinstance(keys, dict) else {}


def _pickled_weights(spec: str, hub_kwargs: dict) -> list[str]:
    """The pickles ``from_pretrained`` reads as ``spec``'s weights (a sharded model's shards): none beside safetensors."""
    weights = _model_file(spec, WEIGHTS_NAMES, hub_kwargs)
    if weights is None or os.path.basename(weights) in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        return []
    if os.path.basename(weights) != WEIGHTS_INDEX_NAME:
        return [weights]
    shards = _json_keys(weights).get("weight_map", {})
    paths = [os.path.join(os.path.dirname(weights), name) for name in sorted(set(shards.values()))]
    return [path for path in paths if os.path.isfile(path)]


def _fetch_again(spec: str, hub_kwargs: dict) -> str:
    """How to get a sound copy of ``spec`` again."""
    if os.path.exists(spec):
        return f"Save the model again with save_pretrained, or copy {spec} again from where it came from."
    cached = _model_file(spec, (CONFIG_NAME, *WEIGHTS_NAMES), hub_kwargs)
    if cached is None:
        return "Download it again."
    repo_folder = Path(cached).parents[2]  # <cache>/models--<org>--<name>/snapshots/<commit>/<file>
    return f"Delete its cached copy {repo_folder} and run again to download it anew."


def _who(spec: str, role: str | None) -> str:
    return f"--{role} {spec!r}" if role else f"The model {spec!r}"


def _refused_artefact(spec: str, role: str | None, hub_kwargs: dict) -> str | None:
    """Why ``spec`` would run code to load (a config naming code of its own, a pickle torch's safe loader refuses)
    or a pickled weights file cannot be read, with the fix; None when neither is the case."""
    who = _who(spec, role)
    config = spec if os.path.isfile(spec) else _model_file(spec, (CONFIG_NAME,), hub_kwargs)
    keys = _json_keys(config)
    if needs_remote_code(keys):
        return (
            f"{who}: {config} names code of its own to build the model (auto_map: {', '.join(keys['auto_map'])}), "
            f"and transformers has no image classifier for its model_type {keys.get('model_type')!r}. hf_cakd never "
            "runs code that comes with a model: use a model of an architecture transformers or timm implements."
        )
    for weights in _pickled_weights(spec, hub_kwargs):
        problem = torch_file_problem(weights)
        if problem == REFUSED_PICKLE:
            return (
                f"{who}: {weights} {problem}, so hf_cakd does not load it. Re-save the model as safetensors where it "
                "came from (save_pretrained writes model.safetensors), or use another source."
            )
        if problem is not None:
            return f"{who}: {weights} {problem}. {_fetch_again(spec, hub_kwargs)}"
    return None


def _is_shape_mismatch(err: BaseException) -> bool:
    """Whether ``err`` is transformers' refusal of weights whose shapes are not the ones their config describes."""
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _SHAPE_MISMATCH)


def _explain_load_failure(err: Exception, spec: str, role: str | None, hub_kwargs: dict) -> str | None:
    """What went wrong loading ``spec`` and how to fix it, or None for an error that is not about the files."""
    who = _who(spec, role)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    weights = _model_file(spec, WEIGHTS_NAMES, hub_kwargs) or "its weights file"
    config = spec if os.path.isfile(spec) else _model_file(spec, (CONFIG_NAME,), hub_kwargs) or "its config.json"
    if isinstance(err, SafetensorError):
        return f"{who}: {weights} is truncated or corrupt ({reason}). {_fetch_again(spec, hub_kwargs)}"
    if _is_shape_mismatch(err):
        return (
            f"{who}: the weights in {weights} do not have the shapes {config} describes (the config was edited or "
            "belongs to another model; the load report above lists the tensors). Put back the config saved with "
            f"these weights. {_fetch_again(spec, hub_kwargs)}"
        )
    keys = _json_keys(config)
    # transformers raises a bare ValueError for a model_type it does not know: its own lookup tells.
    if isinstance(err, ValueError) and keys and keys.get("model_type") not in CONFIG_MAPPING:
        return (
            f"{who}: {config} has model_type {keys.get('model_type')!r}, which transformers "
            f"{transformers.__version__} does not know. Correct model_type in that file, or upgrade transformers "
            "(pip install -U transformers)."
        )
    architecture = spec.removeprefix(TIMM_PREFIX) if spec.startswith(TIMM_PREFIX) else keys.get("architecture")
    # transformers re-raises timm's "Unknown model" RuntimeError as a bare ImportError: timm's registry tells.
    if isinstance(err, ImportError) and architecture and not timm.is_model(architecture):
        return (
            f"{who}: timm {timm.__version__} has no architecture {architecture!r}. Check the name with "
            f"timm.list_models('*{architecture}*'), or upgrade timm (pip install -U timm)."
        )
    if isinstance(err, OSError) and not os.path.exists(spec) and not is_hub_id(spec):
        return f"{who}: there is no such file or folder. Pass an existing path or a Hub model id."
    if isinstance(err, OSError):
        return (
            f"{who} cannot be loaded: {reason.rstrip('.')}. Pass a folder saved with save_pretrained, a Hub model id, "
            "a config.json, or timm:<architecture>."
        )
    return None


@contextlib.contextmanager
def _explained_load_failures(spec: str | PretrainedConfig, role: str | None, hub_kwargs: dict):
    """Turn Hub failures and the load failures :func:`_explain_load_failure` recognises into an :class:`InputError`."""
    try:
        yield
    except DistillationError:
        raise
    except Exception as err:
        name = spec if isinstance(spec, str) else type(spec).__name__
        # Checked on any error: torch reports a pickle it cannot parse as EOFError, KeyError, RuntimeError...
        refused = _refused_artefact(name, role, hub_kwargs) if isinstance(spec, str) else None
        if refused is not None:
            raise InputError(refused) from err
        if not isinstance(err, (SafetensorError, RuntimeError, ValueError, ImportError, OSError, HTTPError)):
            raise
        hub_message = hub_failure(err, _who(name, role), name) if is_hub_id(name) else None
        if hub_message is not None:
            raise HubAccessError(hub_message) from err
        message = _explain_load_failure(err, name, role, hub_kwargs)
        if message is None:
            raise
        raise InputError(message) from err


def load_classifier(
    spec: str | PretrainedConfig,
    id2label: dict[int, str] | None = None,
    *,
    role: str | None = None,
    replace_head: bool = False,
    label_mapping: str | dict[str, str] | None = None,
    model_args: dict[str, Any] | None = None,
    **from_pretrained_kwargs,
) -> PreTrainedModel:
    """Load or build the classifier ``spec`` describes, with the dataset's labels ``id2label``.

    ``role`` (``"teacher"``, ``"student"``) is the command-line flag ``spec`` came from, so an
    :class:`~hf_cakd.errors.InputError` about a file that cannot be loaded names ``--<role>``.

    ``model_args`` are passed to ``timm.create_model`` for ``timm:`` specs (for example
    ``{"img_size": 32, "patch_size": 4}``). A pretrained checkpoint whose labels differ from
    ``id2label`` raises :class:`LabelMismatchError` unless ``label_mapping`` (``"by_name"``, or
    ``{dataset label: checkpoint label}`` for names that differ) keeps the matching classifier
    rows, or ``replace_head`` puts a new head on.
    """
    model_args_flag = f"--{role}_model_args" if role else "model_args"
    if from_pretrained_kwargs.pop("trust_remote_code", False):
        raise UsageError("hf_cakd never runs code that comes with a model: drop trust_remote_code=True.")
    with _explained_load_failures(spec, role, from_pretrained_kwargs):
        if isinstance(spec, PretrainedConfig):
            return _from_config(copy.deepcopy(spec), id2label)  # the caller's config keeps its own labels
        if spec.startswith(TIMM_PREFIX):
            architecture = spec[len(TIMM_PREFIX) :]
            config = TimmWrapperConfig(architecture=architecture, model_args=model_args)
            config._name_or_path = spec  # what a run description and a resume check name it by
            try:
                return _from_config(config, id2label)
            # timm passes model_args on to the model class unchecked: an unknown argument is a TypeError, a
            # value the class cannot build with (too few dims, an unknown stem_type) an IndexError, KeyError or assert.
            except (TypeError, IndexError, KeyError, AssertionError) as err:
                if not model_args:
                    raise
                raise UsageError(
                    f"{model_args_flag} {json.dumps(model_args)} cannot build {spec}: {str(err) or type(err).__name__}. Pass "
                    "only arguments (and values) its model class takes and its name does not already set "
                    f"(timm.create_model({architecture!r}) shows them)."
                ) from err
        if model_args:
            raise UsageError(f"{model_args_flag} only apply to 'timm:<architecture>' specs, not {spec!r}.")
        refuse_folder_without_config(spec, role)
        if _is_config_only(spec):
            logger.info("%s holds a config but no weights: building the model from scratch.", spec)
            return _from_config(AutoConfig.from_pretrained(spec, **NO_REMOTE_CODE), id2label)  # _name_or_path: spec
        model = AutoModelForImageClassification.from_pretrained(spec, **from_pretrained_kwargs, **NO_REMOTE_CODE)
        if id2label is None:
            return model
        return _check_labels(model, spec, id2label, replace_head, label_mapping, role, **from_pretrained_kwargs)


def load_config(spec: str, *, role: str | None = None) -> PretrainedConfig:
    """``AutoConfig.from_pretrained(spec)``; one that cannot be loaded raises an :class:`InputError` naming ``--<role>``."""
    refuse_folder_without_config(spec, role)
    with _explained_load_failures(spec, role, {}):
        return AutoConfig.from_pretrained(spec, **NO_REMOTE_CODE)


def load_image_processor(spec: str | PretrainedConfig):
    """The image processor saved with ``spec``, or None (transforms then come from the model)."""
    if not isinstance(spec, str) or spec.startswith(TIMM_PREFIX) or spec.endswith(".json"):
        return None
    try:
        return AutoImageProcessor.from_pretrained(spec, **NO_REMOTE_CODE)
    except (OSError, ValueError) as err:
        logger.info("No image processor for %s (%s); using the model's own data config.", spec, err)
        return None
