"""The distilled student on the Hub: its model card, its push, and a folder timm can load too.

- :func:`student_model_card` renders the card (``model_cards/student.md.jinja``, package data through the
  ``hf_cakd/model_cards`` link) from plain values
  gathered in a :class:`CardInputs`; :func:`default_license` and :func:`framework_versions` give
  two of them.
- :func:`push_student` uploads an output folder (the student at the top), retrying transient failures.
- :func:`make_timm_loadable` rewrites a saved ``TimmWrapper`` student so ``timm.create_model`` loads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import requests
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, hf_hub_download, metadata_load
from huggingface_hub.errors import HfHubHTTPError, HTTPError
from safetensors.torch import load_file, save_file
from transformers.modelcard import make_markdown_table, parse_log_history

from ..errors import DistillationError
from ..hub_errors import error_summary
from ..methods import method_class
from ..model_specs import is_hub_id
from ..version import __version__

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "student.md.jinja"


def default_template_path() -> Path:
    """The student card template, package data of hf_cakd."""
    return Path(str(files("hf_cakd") / "model_cards" / TEMPLATE_NAME))


# ---- the card ----

PAPERS = {
    "ofa": {
        "title": "One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge Distillation",
        "arxiv": "2310.19444",
        "bibtex": """@inproceedings{hao2023ofa,
  title={One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge Distillation},
  author={Hao, Zhiwei and Guo, Jianyuan and Han, Kai and Tang, Yehui and Hu, Han and Wang, Yunhe and Xu, Chang},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2023}
}""",
    },
    "fbt": {
        "title": "Fuse Before Transfer: Knowledge Fusion for Heterogeneous Distillation",
        "arxiv": "2410.12342",
        "bibtex": """@inproceedings{li2025fbt,
  title={Fuse Before Transfer: Knowledge Fusion for Heterogeneous Distillation},
  author={Li, Guopeng and Wang, Qiang and Yan, Ke and Ding, Shouhong and Gao, Yuan and Xia, Gui-Song},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2025}
}""",
    },
    "rsd": {
        "title": "Cross-Architecture Distillation Made Simple with Redundancy Suppression",
        "arxiv": "2507.21844",
        "bibtex": """@inproceedings{zhang2025rsd,
  title={Cross-Architecture Distillation Made Simple with Redundancy Suppression},
  author={Zhang, Weijia and Liu, Yuehao and Ran, Wu and Ma, Chao},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2025}
}""",
    },
}

FRAMEWORKS = ("transformers", "torch", "datasets", "timm", "accelerate")


def framework_versions() -> dict[str, str]:
    """The versions a student card lists: Trainer's cards' (transformers, torch, datasets), timm, accelerate, hf_cakd."""
    return {**{name: importlib.metadata.version(name) for name in FRAMEWORKS}, "hf_cakd": __version__}


# What starts markup in a card's Markdown (and its HTML); "_" only at the edge of a word: inside one it starts nothing.
_MARKUP = re.compile(r"[\\`*\[\]<>&|~]|(?<![^\W_])_|_(?![^\W_])")


def markdown_text(name: str | None) -> str | None:
    """``name`` (a folder's, a label's) as Markdown that shows it as it is: markup escaped, on one line."""
    return None if name is None else _MARKUP.sub(lambda match: "\\" + match.group(), " ".join(name.split()))


def markdown_code(name: str | None) -> str | None:
    """``name`` as a Markdown code span, whose fence is longer than any run of backticks inside it."""
    if name is None:
        return None
    name = " ".join(name.split())
    fence = "`" * (max(map(len, re.findall("`+", name)), default=0) + 1)
    pad = " " if name.startswith("`") or name.endswith("`") else ""
    return f"{fence}{pad}{name}{pad}{fence}"


def public_name(spec: str | None) -> str | None:
    """How a card names a model or data set: a Hub id or ``timm:`` name as is, a local path by its base name."""
    if not spec or is_hub_id(spec) or spec.startswith("timm:"):
        return spec
    return Path(spec).resolve().name


@dataclass
class CardInputs:
    """Everything a student card states, as plain values the training pipeline already has.

    Specs (``teacher``, ``student``, ``dataset``) are given as on the command line; the card shows
    Hub ids as they are and local paths by their base name only.
    """

    model_name: str
    """The card's title: the output folder's name."""
    student: str
    teacher: str | None
    """None for the supervised baseline (method ``none``)."""
    student_family: str
    teacher_family: str | None
    method: str
    method_title: str
    method_options: dict[str, Any]
    """The method's options that differ from its defaults, name -> value (JSON form): the card lists these and
    links to ``results.json`` for all of them."""
    dataset: str
    eval_split: str | None
    """None: the run had no eval split, and the card has no results."""
    metrics: dict[str, dict[str, float]]
    """Row (``"student"``, ``"teacher"``) -> ``{"top1": .., "top5": ..}``, fractions; may be empty."""
    global_steps: int
    epochs_seen: float | None
    """Epochs the optimiser actually went through: steps x effective batch / training images; None for a
    stream (``--streaming``), whose number of images is unknown."""
    per_device_batch_size: int
    num_processes: int
    gradient_accumulation_steps: int
    learning_rate: float
    seed: int
    license: str
    """A Hub license id; see :func:`default_license`. ``"other"`` adds a line asking to set it."""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    """``trainer.state.log_history``; its table is rendered as Trainer's own cards render it."""
    input_resolutions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Role (``"student"``, ``"teacher"``) -> (height, width) of the images it was fed."""
    skipped_images: int = 0
    """Training images that could not be decoded and were skipped."""
    versions: dict[str, str] = field(default_factory=framework_versions)
    pair_options: dict[str, Any] = field(default_factory=dict)
    """The options whose default follows the pair ("auto") and the values it set, name -> value (JSON form)."""
    experimental_options: Sequence[str] = ()
    """Names of the method's experimental options (beyond the paper); the card marks them where they are set."""
    saved_student: str = "student"
    """The metrics row of the weights saved as the model (``student_ema`` with ``--save_ema_as_student``)."""
    ema_decay: float | None = None
    """``--model_ema_decay``: a moving average of the student was kept (its row ``student_ema``)."""
    method_chosen_by_auto: bool = False
    """``--method auto`` chose the method by the student's family."""
    recipe: dict[str, Any] = field(default_factory=dict)
    """The training recipe's flags that were set (augmentation, Mixup/CutMix, label smoothing), flag name -> value."""
    num_classes: int | None = None
    """The dataset's number of classes (chance is one over it)."""
    train_split: str = "train"
    train_rows: int | None = None
    """The training images (rows of ``train_split``); None when unknown (a stream)."""
    eval_rows: int | None = None
    """The evaluation images the results were measured on (rows of ``eval_split``); None when unknown (a stream)."""
    student_from_scratch: bool = False
    """The student started from random weights (a config, ``timm:<name>``, the default student), not trained ones."""
    teacher_near_chance: bool = False
    """The teacher's top-1 on the eval rows was near chance (``results.json``'s ``teacher_near_chance``)."""

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.num_processes * self.gradient_accumulation_steps


def _eval_results(inputs: CardInputs, dataset: str) -> list[EvalResult] | None:
    if inputs.eval_split is None or inputs.saved_student not in inputs.metrics:
        return None
    student = inputs.metrics[inputs.saved_student]
    # Two distinct metric types, so the Hub shows two results, not one metric reported twice.
    return [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=inputs.eval_split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(student[key], 4),
        )
        for key, metric_type, metric_name in (
            ("top1", "accuracy", "top-1 accuracy"),
            ("top5", "top_5_accuracy", "top-5 accuracy"),
        )
    ]


def _training_log_table(log_history: list[dict[str, Any]]) -> str | None:
    """The per-evaluation table of Trainer's cards; without evaluations, the logged training losses."""
    _, lines, _ = parse_log_history(log_history)
    if not lines:
        lines = [
            {"Training Loss": row["loss"], "Epoch": row["epoch"], "Step": row["step"]}
            for row in log_history
            if "loss" in row
        ]
    return make_markdown_table(lines) if lines else None


def student_model_card(
    inputs: CardInputs, *, repo_id: str | None = None, template_path: str | os.PathLike | None = None
) -> ModelCard:
    """Render the student's card: Hub metadata, the teacher, the method, the training and the results.

    ``repo_id`` is what the usage snippets load: the output folder, or the Hub repository it is pushed to
    (default: ``inputs.model_name``). The metadata names
    the ``license``, the teacher (``teacher_model``), and ``base_model`` only when the student
    started from a Hub model; ``eval_results`` carries the student's top-1 and top-5 when there was
    an eval split. Papers are cited for OFA and FBT (whose logit loss is OFA's).
    """
    dataset = public_name(inputs.dataset)
    teacher = public_name(inputs.teacher)
    card_data = ModelCardData(
        license=inputs.license,
        base_model=inputs.student if is_hub_id(inputs.student) else None,
        datasets=[dataset] if is_hub_id(inputs.dataset) else None,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "knowledge-distillation", "hf_cakd", f"distillation-{inputs.method}"],
        metrics=["accuracy"],
        model_name=inputs.model_name,
        eval_results=_eval_results(inputs, dataset),
        teacher_model=teacher,
    )
    papers = [PAPERS[name] for name in method_class(inputs.method).cited_papers(inputs.method_options | inputs.pair_options)]
    student = public_name(inputs.student)
    # Names come from folders and data sets someone else may have named: the card shows them as text. Jinja
    # inserts values as they are, never as template code.
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or default_template_path()),
        inputs=inputs,
        title=markdown_text(inputs.model_name),
        teacher=markdown_text(teacher),
        student=markdown_text(student),
        dataset=markdown_text(dataset),
        teacher_code=markdown_code(teacher),
        student_code=markdown_code(student),
        results=[{"name": name, **values} for name, values in inputs.metrics.items()] if inputs.eval_split else [],
        training_log=_training_log_table(inputs.log_history),
        training_images=f"{f'{inputs.train_rows:,} images of ' if inputs.train_rows else ''}the {inputs.train_split} "
        f"split of {dataset}",
        papers=papers,
        repo_id=repo_id or inputs.model_name,
    )


def card_metadata(spec: str) -> dict:
    """The metadata block of a model's card (a local folder's ``README.md``, else its Hub card) as a dict.

    {} for a card without one, or a local folder without a card. Read with ``metadata_load``, which,
    unlike ``ModelCard.load``, logs no warning for a card without metadata: callers say, once, what
    missing metadata means to them. A Hub card that cannot be fetched raises what
    ``hf_hub_download`` raises.
    """
    if os.path.isdir(spec):
        readme = Path(spec) / "README.md"
        return (metadata_load(readme) or {}) if readme.is_file() else {}
    return metadata_load(hf_hub_download(spec, "README.md")) or {}


def _card_license(spec: str | None) -> str | None:
    if not spec or spec.startswith(("timm:", "hf_cakd:")):  # built from scratch (hf_cakd: the default students)
        return None
    try:
        return card_metadata(spec).get("license")
    except Exception as err:  # offline, no such repo, no card: the next source decides
        logger.info("No license read from the model card of %s (%s).", spec, error_summary(err))
        return None


def default_license(teacher: str | None, student: str | None) -> tuple[str, str]:
    """``(license, source)`` for the student card: the teacher's card license, else the student's, else ``other``.

    A spec's card is its local folder's ``README.md`` or its Hub model card; a card that cannot be
    read (offline, no card, no license in its metadata) is skipped. ``source`` says where the license
    came from (``"teacher"``, ``"student"`` or ``"none"``); with ``"none"`` one line says so.
    """
    for source, spec in (("teacher", teacher), ("student", student)):
        license = _card_license(spec)
        if license:
            return license, source
    logger.info(
        "Neither the teacher's nor the student's model card names a license: the student's card says 'other'. "
        "Pass --license (a Hub license id) to set it."
    )
    return "other", "none"


# ---- the push ----

# Files of an output folder that are not the student; DISTILLATION_PARTS go up only on request.
NOT_UPLOADED = ["checkpoint-*", "README.md", "training_args.bin", "runs/*"]
DISTILLATION_PARTS = ["assistant/*", "distillation_method.safetensors", "distillation_config.json"]


class PushError(DistillationError):
    """A push to the Hub that failed after its retries; the local output folder is left as it was."""

    exit_code = 3


def _is_transient(err: Exception) -> bool:
    """A 5xx answer, or no answer at all: a connection error of huggingface_hub's HTTP client or of requests."""
    if isinstance(err, HfHubHTTPError):
        return err.response.status_code >= 500
    # HTTPError is the base error of huggingface_hub's HTTP client (httpx); status errors come as HfHubHTTPError.
    return isinstance(err, (HTTPError, requests.ConnectionError, requests.Timeout))


def _with_retries(call: Callable[[], Any], *, attempts: int, sleep: Callable[[float], None], backoff: float) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt == attempts or not _is_transient(err):
                raise
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("Hub push failed (%s); attempt %d of %d in %.0f s.", err, attempt + 1, attempts, delay)
            sleep(delay)


def push_student(
    output_dir: str | os.PathLike,
    repo_id: str,
    card: ModelCard | None = None,
    *,
    token: str | None = None,
    private: bool | None = None,
    include_distillation_parts: bool = False,
    attempts: int = 4,
    backoff: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Upload a finished output folder to ``repo_id``: the student at the top, then its card.

    What lands on the Hub: the student's files (``config.json``, weights, image processor,
    ``results.json``) at the top of the repository, so ``AutoModel*.from_pretrained(repo_id)`` and
    ``pipeline(..., model=repo_id)`` load it; then ``README.md`` from ``card``, or, when ``card`` is
    None, the folder's own ``README.md`` if it has one (so an existing output folder can be pushed
    later). Checkpoints, ``runs/`` and ``training_args.bin`` never go up. The distillation parts (the
    ``assistant/`` folder, ``distillation_method.safetensors``, ``distillation_config.json``) stay
    local unless ``include_distillation_parts=True``; then they go under ``distillation/``.

    Each upload that fails on a connection error or a 5xx answer is retried, ``attempts`` times in
    all, waiting ``backoff`` seconds, then twice as long each time (``sleep`` waits). If the push
    still fails, :class:`PushError` says how to push the folder later with ``hf-cakd push``.
    Local files are only read, never changed.
    """
    output_dir = Path(output_dir)
    uploads = _student_uploads(HfApi(token=token), output_dir, repo_id, card, private, include_distillation_parts)
    try:
        for upload in uploads:
            _with_retries(upload, attempts=attempts, sleep=sleep, backoff=backoff)
    except Exception as err:
        raise PushError(
            f"Pushing {output_dir} to {repo_id} failed: {err}\n"
            f"The local output folder {output_dir} is complete and untouched; push it later with:\n"
            f"  hf-cakd push {output_dir} --repo_id {repo_id}"
        ) from err


def _student_uploads(
    api: HfApi, output_dir: Path, repo_id: str, card: ModelCard | None, private: bool | None, include_parts: bool
) -> list[Callable[[], Any]]:
    """The calls of one push, in order (see :func:`push_student`): each is retried on its own."""
    uploads: list[Callable[[], Any]] = [
        lambda: api.create_repo(repo_id, private=private, exist_ok=True),
        lambda: api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            ignore_patterns=NOT_UPLOADED + DISTILLATION_PARTS,
            commit_message="Upload distilled student (hf_cakd)",
        ),
    ]
    if include_parts:
        uploads.append(
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=output_dir,
                path_in_repo="distillation",
                allow_patterns=DISTILLATION_PARTS,
                commit_message="Upload the distillation parts (assistant, method state)",
            )
        )
    readme = output_dir / "README.md"
    if card is not None:
        card_text = str(card)
    else:  # the folder's card, its usage snippets loading repo_id (distill rendered them for --hub_model_id or the folder)
        card_text = _loading(repo_id, readme.read_text(encoding="utf-8")) if readme.is_file() else None
    if card_text is not None:
        uploads.append(
            lambda: api.upload_file(
                path_or_fileobj=card_text.encode("utf-8"),
                path_in_repo="README.md",
                repo_id=repo_id,
                commit_message="Add model card",
            )
        )
    return uploads


# The model id in the card's usage snippets (student.md.jinja, "How to use"): pipeline(..., model="ID") and from_pretrained("ID").
_SNIPPET_ID = re.compile(r'(pipeline\("image-classification", model=|\.from_pretrained\()"[^"\n]*"')


def _loading(repo_id: str, card_text: str) -> str:
    """``card_text`` with its usage snippets loading ``repo_id``."""
    return _SNIPPET_ID.sub(lambda match: f'{match.group(1)}"{repo_id}"', card_text)


# ---- timm ----

# pretrained_cfg fields that describe where the architecture's reference weights came from, not this student.
_SOURCE_FIELDS = ("url", "file", "hf_hub_id", "hf_hub_filename", "source", "tag", "license", "description",
                  "origin_url", "paper_name", "paper_ids", "notes", "num_classes", "label_names",
                  "label_descriptions", "label_offset", "state_dict")  # fmt: skip


def _processor_data_config(output_dir: Path) -> dict[str, Any]:
    """timm's data config fields for the eval preprocessing saved in ``preprocessor_config.json``."""
    path = output_dir / "preprocessor_config.json"
    if not path.is_file():
        return {}
    processor = json.loads(path.read_text(encoding="utf-8"))
    if "crop_size" not in processor or "image_mean" not in processor:
        return {}
    from PIL.Image import Resampling

    crop = (processor["crop_size"]["height"], processor["crop_size"]["width"])
    config = {"input_size": (3, *crop), "mean": processor["image_mean"], "std": processor["image_std"]}
    size = processor.get("size", {})
    if "shortest_edge" in size:
        config["crop_pct"] = min(crop) / size["shortest_edge"]
    elif "height" in size and not processor.get("do_center_crop", True):  # stretched to the size, no crop
        config.update(crop_pct=1.0, crop_mode="squash")
    if "resample" in processor:
        config["interpolation"] = Resampling(processor["resample"]).name.lower()
    return config


def make_timm_loadable(output_dir: str | os.PathLike) -> bool:
    """Make a saved ``TimmWrapperForImageClassification`` folder loadable by timm as well.

    transformers writes the timm model's weights under a ``timm_model.`` prefix and a config.json
    that timm reads as a bare ``pretrained_cfg`` (and fails on). This rewrites, in place, the
    weights without the prefix (transformers adds it back on load) and adds a ``pretrained_cfg`` to
    config.json: the architecture's own, less its reference weights' provenance, with the input
    size and normalisation of the saved ``preprocessor_config.json``. Afterwards both
    ``timm.create_model("local-dir:<folder>", pretrained=True)`` (or ``"hf-hub:<repo_id>"``) and
    ``AutoModelForImageClassification.from_pretrained(folder)`` load it. Returns False, changing
    nothing, for a folder that holds no timm student.
    """
    from timm.models import get_pretrained_cfg

    output_dir = Path(output_dir)
    config_path = output_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "timm_wrapper":
        return False
    for weights in sorted(output_dir.glob("*.safetensors")):
        state_dict = load_file(weights)
        if any(key.startswith("timm_model.") for key in state_dict):
            state_dict = {key.removeprefix("timm_model."): tensor for key, tensor in state_dict.items()}
            partial = weights.with_name(weights.name + ".partial")
            save_file(state_dict, partial, metadata={"format": "pt"})
            os.replace(partial, weights)  # a process killed while writing leaves the saved student whole
    index_path = output_dir / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index["weight_map"] = {key.removeprefix("timm_model."): f for key, f in index["weight_map"].items()}
        index_path.write_text(json.dumps(index, indent=2), encoding="utf-8")
    reference = get_pretrained_cfg(config["architecture"])
    pretrained_cfg = {
        key: value
        for key, value in (reference.to_dict() if reference else {}).items()
        if key not in _SOURCE_FIELDS and value is not None
    }
    pretrained_cfg.update(config.get("pretrained_cfg", {}), architecture=config["architecture"], custom_load=False)
    pretrained_cfg.update(_processor_data_config(output_dir))
    config["pretrained_cfg"] = {key: pretrained_cfg[key] for key in sorted(pretrained_cfg) if key not in _SOURCE_FIELDS}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True
