"""The distilled student's model card (rendered from ``model_cards/``) and its push to the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "student.md.jinja"

METHOD_TITLES = {
    "none": "no distillation (supervised baseline)",
    "kd": "Hinton knowledge distillation",
    "fitnet": "FitNet feature hints",
    "ofa": "OFA (One-for-All) distillation",
    "fbt": "FBT (Fuse Before Transfer)",
}
# The arguments that define each method, shown in the card.
METHOD_ARGS = {
    "none": [],
    "kd": ["kd_temperature", "logit_weight"],
    "fitnet": ["fitnet_stage", "feature_weight"],
    "ofa": ["ofa_gamma", "ofa_temperature", "logit_weight"],
    "fbt": [
        "fbt_logit_loss",
        "ofa_gamma",
        "infonce_weight",
        "logit_weight",
        "infonce_pooling",
        "projector_dim",
        "infonce_temperature",
        "detach_assistant",
        "bridge_type",
    ],
}


def _looks_like_hub_id(spec: str | None) -> bool:
    return bool(spec) and not spec.startswith("timm:") and not os.path.exists(spec) and spec.count("/") == 1


def student_model_card(
    *,
    args,
    teacher: str | None,
    student: str,
    dataset: str,
    eval_split: str,
    metrics: dict[str, dict[str, float]],
    families: dict[str, str],
    repo_id: str | None = None,
    template_path: str | os.PathLike = DEFAULT_TEMPLATE,
) -> ModelCard:
    """Render the student's card: Hub metadata, the teacher, the method and the results table.

    ``metrics`` maps a row name (``"student"``, ``"teacher"``) to ``{"top1": .., "top5": ..}``.
    """
    student_metrics = metrics["student"]
    dataset_id = dataset if _looks_like_hub_id(dataset) else Path(dataset).name
    card_data = ModelCardData(
        base_model=student if _looks_like_hub_id(student) else None,
        datasets=[dataset_id],
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "knowledge-distillation", "hf_cakd", f"distillation-{args.method}"],
        metrics=["accuracy"],
        model_name=Path(args.output_dir).name,
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=dataset_id,
                dataset_name=dataset_id,
                dataset_split=eval_split,
                metric_type="accuracy",
                metric_name=f"top-{k} accuracy",
                metric_value=round(student_metrics[f"top{k}"], 4),
            )
            for k in (1, 5)
        ],
    )
    template_kwargs: dict[str, Any] = dict(
        model_name=Path(args.output_dir).name,
        teacher=teacher or "none",
        student=student,
        teacher_family=families.get("teacher", "-"),
        student_family=families.get("student", "-"),
        method=args.method,
        method_title=METHOD_TITLES.get(args.method, args.method),
        method_args={name: args.method_config[name] for name in METHOD_ARGS.get(args.method, [])},
        dataset=dataset_id,
        eval_split=eval_split,
        results=[{"name": name, **values} for name, values in metrics.items()],
        epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        batch_size=args.per_device_train_batch_size,
        repo_id=repo_id or args.output_dir,
        library_name="transformers",
    )
    return ModelCard.from_template(card_data, template_path=str(template_path), **template_kwargs)


def push_student(
    output_dir: str, repo_id: str, card: ModelCard | None, token: str | None = None, private: bool | None = None
):
    """Upload the saved student, then its card (when there is one).

    The card goes last, on purpose: a model's own push writes a generic README.md, which the
    card must replace. Both uploads go through the same ``HfApi`` client (``ModelCard.push_to_hub``
    would use huggingface_hub's module-level client and post the card to a validation endpoint
    first); the card's metadata is written by ``ModelCardData``, so it is valid YAML by construction.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        ignore_patterns=["checkpoint-*", "README.md", "training_args.bin", "runs/*"],
        commit_message="Upload distilled student (hf_cakd)",
    )
    if card is not None:
        api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            commit_message="Add model card",
        )
