"""Files from someone else run no code: how hf_cakd reads pickles and model configs it did not write.

A ``.bin``, ``.pt`` or ``.pth`` file is a pickle, and unpickling can run any code. hf_cakd reads
pickles only through torch's safe loader (``torch.load(weights_only=True)``, as transformers and
the Trainer do) and never passes ``weights_only=False``; it never runs the code a model's config
names (``auto_map``): ``trust_remote_code`` is always False. docs/operations.md, "Untrusted
artefacts", lists what is refused and why.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping

import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
from transformers.trainer_pt_utils import safe_globals

# Passed to every Auto*.from_pretrained: without it, transformers asks on a terminal whether to run a model's own code.
NO_REMOTE_CODE = {"trust_remote_code": False}

REFUSED_PICKLE = (
    "is refused by torch's safe loader: it is a pickle holding more than tensors and plain values (unpickling it "
    "could run code), or no torch file at all"
)
UNREADABLE_PICKLE = "cannot be read: it is truncated, corrupt, or not a file torch.save wrote"


def torch_file_problem(path: str, allow_numpy: bool = False) -> str | None:
    """Why ``path`` cannot be loaded with torch's safe loader (:data:`REFUSED_PICKLE`, :data:`UNREADABLE_PICKLE`), or None.

    Loaded as transformers and the Trainer load it (``weights_only=True``; ``allow_numpy``: with the
    Trainer's allowlist of numpy types, as for its RNG states), memory-mapped when it is a zip archive, so
    that only its pickle is read.
    """
    allowed = safe_globals() if allow_numpy else contextlib.nullcontext()
    try:
        with allowed, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it was not written with
            torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        return REFUSED_PICKLE
    # Bytes torch cannot parse come out as EOFError, KeyError, RuntimeError, ValueError...: none of them loads.
    except Exception:
        return UNREADABLE_PICKLE
    return None


def needs_remote_code(config: Mapping) -> bool:
    """Whether a model config (``config.json``'s keys) names code of its own (``auto_map``) and transformers has
    no image classifier for its ``model_type``: it loads only by running that code."""
    return bool(config.get("auto_map")) and config.get("model_type") not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
