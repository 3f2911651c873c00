"""Method options that earlier versions named otherwise, or had: the one table of them, and what reads it.

Every option carries its method's prefix (docs/method.md, "Options"). A name from before is refused in one
line naming its new one, as a flag, a config-file key or a ``method_config`` key; a checkpoint written
before keeps its options under the old names, which :func:`saved_options_renamed` maps.
"""

from __future__ import annotations

from typing import Any

RENAMED_OPTIONS: dict[str, dict[str, str]] = {  # method: {old name: new name}
    "kd": {"logit_weight": "kd_weight"},
    "feature_kd": {"feature_weight": "feature_kd_weight"},
    "fitnet": {"feature_weight": "fitnet_weight"},
    "ofa": {"ofa_loss_weight": "ofa_branch_weight", "logit_weight": "ofa_logit_weight", "projector_dim": "ofa_branch_dim"},
    "rsd": {"logit_weight": "rsd_logit_weight"},
    "fbt": {
        "logit_weight": "fbt_logit_weight",
        "infonce_weight": "fbt_infonce_weight",
        "infonce_pooling": "fbt_infonce_pooling",
        "infonce_use_cls": "fbt_infonce_use_cls",
        "infonce_temperature": "fbt_infonce_temperature",
        "infonce_feature": "fbt_infonce_feature",
        "infonce_mask_same_label": "fbt_infonce_mask_same_label",
        "gather_negatives": "fbt_gather_negatives",
        "projector_dim": "fbt_projector_dim",
        "bridge_type": "fbt_bridge_type",
        "bridge_upsample": "fbt_bridge_upsample",
        "bridge_downsample": "fbt_bridge_downsample",
    },
}
REMOVED_OPTIONS: dict[str, dict[str, Any]] = {  # method: {removed option: its value whose behaviour stays}
    "fbt": {
        "fbt_assistant_gate": "none",
        "bridge_alignment_weight": 0.0,
        "own_teacher_suffix": False,
        "detach_assistant": True,
    },
}
REMOVED_HELP = "was removed (docs/method.md says why)"


def _old_name(method: str, name: str) -> str | None:
    """What became of ``name`` under ``method`` (or, if ``method`` never had it, under the methods that did)."""
    removed = REMOVED_OPTIONS.get(method) or {}
    renamed = RENAMED_OPTIONS.get(method) or {}
    if name in removed:
        return f"--{name} {REMOVED_HELP}"
    if name in renamed:
        return f"--{name} was renamed --{renamed[name]}"
    new_names = {table[name]: owner for owner, table in RENAMED_OPTIONS.items() if name in table}
    if len(new_names) == 1:
        return f"--{name} was renamed --{next(iter(new_names))}"
    if new_names:
        return f"--{name} was renamed, for each method: " + ", ".join(f"--{new} ({owner})" for new, owner in new_names.items())
    if any(name in table for table in REMOVED_OPTIONS.values()):
        return f"--{name} {REMOVED_HELP}"
    return None


def refuse_old_names(method: str, names) -> None:
    """Refuse, in one line, option names of earlier versions among ``names``: each with its new name, or as removed."""
    found = [line for name in names if (line := _old_name(method, name))]
    if found:
        raise ValueError("; ".join(found) + ".")


def saved_options_renamed(method: str, saved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint's method options (``distillation_config.json``) under today's names, and the removed options
    it set to a behaviour that no longer exists (a removed option at its kept value is dropped)."""
    renamed = RENAMED_OPTIONS.get(method) or {}
    removed = REMOVED_OPTIONS.get(method) or {}
    options = {renamed.get(name, name): value for name, value in saved.items() if name not in removed}
    lost = {name: value for name, value in saved.items() if name in removed and value != removed[name]}
    return options, lost
