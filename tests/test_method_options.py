"""Options of ``ofa`` and ``fbt`` beyond their defaults: terms, values by hand, gradients, one trainer step each.

The methods are built on tiny models' staged views and called on fixed random batches; values are
recomputed from the method's own parts with the plain formulas. Everything runs in evaluation
mode (no dropout) unless gradients are the point.
"""

from __future__ import annotations

from dataclasses import replace

import json
import re
import typing
from collections import defaultdict
from dataclasses import fields

import pytest

from benchmarks.accuracy.default_rule import DOCS, Standing, best_methods, choose, evidence_table
import torch
import torch.nn.functional as F

from hf_cakd.backbones import staged_view
from hf_cakd.errors import UsageError
from hf_cakd.losses import info_nce, spatial_smooth
from hf_cakd.backbones import FAMILIES
from hf_cakd.methods import AUTO_METHOD, BEST_METHOD_FOR_STUDENT, METHODS, method_class, method_config
from hf_cakd.methods.base import BY_PAIR, BY_PAIR_HELP, ByPair
from hf_cakd.methods.renamed import REMOVED_OPTIONS, RENAMED_OPTIONS
from hf_cakd.modeling_distillation import DistillationModel
from hf_cakd.methods.kd import KDConfig, KDLossOptions
from hf_cakd.methods.ofa import OFAConfig, OFALossOptions
from test_trainer import INFONCE, LOSS_TERMS, PAIRS, TEMPERATURES, make_trainer, training_logs
from tiny_models import IMAGE_SIZE, NUM_LABELS, TINY_MODELS, build, small_heads

B = 6


def soft_ce(student_logits, teacher_logits):
    """OFA at gamma 1: cross-entropy to the teacher's soft targets."""
    return -(teacher_logits.softmax(-1) * student_logits.log_softmax(-1)).sum(-1).mean()


def build_method(method, teacher="hf-resnet", student="hf-vit", **options):
    torch.manual_seed(0)
    teacher_view = staged_view(build(teacher, seed=1), IMAGE_SIZE)
    student_view = staged_view(build(student, seed=2), IMAGE_SIZE)
    options = {**small_heads(method), **options}
    return method_class(method)(student_view, teacher_view, method_config(method, options)).eval()


def run(method, labels=None, grad=False):
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(B, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    labels = torch.tensor([0, 1, 0, 2, 1, 0]) if labels is None else labels
    with torch.no_grad():
        teacher = method.teacher_view(pixels)
    with torch.set_grad_enabled(grad):
        student = method.student_view(pixels)
        return method(student, teacher, labels), student, teacher, labels


# ---- the options themselves: one meaning each, typed, documented for users ----

BENCHMARK_FIGURE = re.compile(r"benchmark|experiments\.md|FLOP|points|seed|%|\d\.?\d*x(?!\d)")


FIRST_OF_EACH_FAMILY = [next(name for name, (family, _) in TINY_MODELS.items() if family == f) for f in FAMILIES]


@pytest.mark.parametrize("student_name", FIRST_OF_EACH_FAMILY)
def test_auto_distils_each_student_with_the_best_measured_method_for_its_family(student_name, caplog):
    assert set(BEST_METHOD_FOR_STUDENT) == set(FAMILIES) and set(BEST_METHOD_FOR_STUDENT.values()) <= set(METHODS)
    student, teacher = build(student_name), build("hf-vit")
    family = staged_view(student, IMAGE_SIZE).family
    with caplog.at_level("INFO", logger="hf_cakd"):
        auto = DistillationModel.build(student, teacher, AUTO_METHOD, {"ofa_temperature": 2.0}, IMAGE_SIZE, IMAGE_SIZE)
    chosen = BEST_METHOD_FOR_STUDENT[family]  # ofa or fbt: both have OFA's logit loss
    given = method_config(chosen, {"ofa_temperature": 2.0}).for_pair(auto.teacher_view, auto.student_view)
    assert auto.method.name == chosen and auto.method.config == given
    assert f"--method auto: {chosen}, the best measured method for {family} students" in caplog.text
    assert DistillationModel.build(student, teacher, "fbt", None, IMAGE_SIZE, IMAGE_SIZE).method.name == "fbt"


def test_auto_follows_the_rule_on_the_committed_benchmark_results():
    assert best_methods() == BEST_METHOD_FOR_STUDENT
    assert evidence_table() in DOCS.read_text(), "docs/method.md's table is stale: python -m benchmarks.accuracy.default_rule --write"


def test_the_rule_takes_a_cheaper_method_within_the_larger_spread():
    leader, cheaper, cheapest = Standing("fbt", 50.0, 1.0, 99.0), Standing("ofa", 48.5, 1.6, 90.0), Standing("kd", 45.0, 1.0, 89.0)
    assert choose([leader, cheaper, cheapest]) == (leader, cheaper)  # 1.5 points apart, within ofa's 1.6
    assert choose([leader, replace(cheaper, spread=1.2)]) == (leader, leader)  # 1.5 apart, past both spreads
    assert choose([replace(leader, gflops=80.0), cheaper]) == (replace(leader, gflops=80.0),) * 2  # the leader is cheapest


def test_the_log_names_the_options_the_pair_set(caplog):
    with caplog.at_level("INFO", logger="hf_cakd"):
        built = DistillationModel.build(build("hf-resnet"), build("hf-vit"), "fbt", {"fbt_bridge_downsample": 1}, IMAGE_SIZE, IMAGE_SIZE)
    assert built.method.options_set_by_pair == {
        "fbt_feature_loss": "infonce", "fbt_bridge_type": "attention", "fbt_bridge_upsample": True,
        "fbt_transfer_paths": ["teacher_student", "teacher_assistant"], "fbt_deep_supervision": [1, 2, 3],
    }  # fbt_bridge_downsample was given
    assert (
        "--method fbt, cnn student and attention teacher: --fbt_feature_loss infonce, --fbt_bridge_type attention, "
        "--fbt_bridge_upsample true, --fbt_transfer_paths teacher_student,teacher_assistant, --fbt_deep_supervision "
        "1,2,3 ('auto': follows the pair; docs/method.md)"
    ) in caplog.text
    with caplog.at_level("INFO", logger="hf_cakd"):
        to_vit = DistillationModel.build(build("hf-vit"), build("hf-resnet"), "fbt", None, IMAGE_SIZE, IMAGE_SIZE)
    assert to_vit.method.options_set_by_pair["fbt_deep_supervision"] == []
    assert to_vit.method.options_set_by_pair["fbt_feature_loss"] == "rsd"  # RSD's loss across families, InfoNCE above
    assert "attention student and cnn teacher: --fbt_feature_loss rsd, --fbt_bridge_type attention, " in caplog.text
    assert "--fbt_bridge_upsample false, --fbt_transfer_paths teacher_student,teacher_assistant,assistant_student, " in caplog.text
    assert "--fbt_deep_supervision '', --fbt_bridge_downsample 1 ('auto'" in caplog.text

    unresolved = method_config("fbt", None)
    with pytest.raises(ValueError, match="'auto' until the pair sets it: call for_pair"):
        unresolved.transfer_pairs
    assert len(to_vit.method.config.transfer_pairs) == 3  # the paper's three paths, for a ViT student


def test_an_option_several_methods_have_means_the_same_in_each():
    helps = defaultdict(set)
    for method in METHODS.values():
        for option in fields(method.config_class):
            helps[option.name].add(option.metadata["help"])
    assert all(len(texts) == 1 for texts in helps.values())
    # Shared loss options are one option group that each config inherits, not copies.
    assert issubclass(method_class("fbt").config_class, OFALossOptions) and issubclass(OFAConfig, OFALossOptions)
    assert issubclass(method_class("fbt").config_class, KDLossOptions) and issubclass(KDConfig, KDLossOptions)
    # ofa's branch width has a name of its own; fbt_projector_dim is fbt's (InfoNCE projectors).
    assert "fbt_projector_dim" not in OFAConfig.option_names() and "ofa_branch_dim" in OFAConfig.option_names()


def _declaring_module(config_class, name: str) -> str:
    """The module of the first class (from MethodConfig down) that declares option ``name``: its owner."""
    owner = next(cls for cls in reversed(config_class.__mro__) if name in getattr(cls, "__annotations__", {}))
    return owner.__module__.rsplit(".", 1)[1]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_option_carries_the_prefix_of_the_method_that_owns_it(method):
    """One naming scheme: a method's own options and the loss groups it shares carry the owning method's prefix
    (fbt's OFA loss options are ofa_*); only the options every method has are unprefixed."""
    config_class = method_class(method).config_class
    for name in config_class.option_names():
        owner = _declaring_module(config_class, name)
        if owner == "base":
            assert name in {"ce_weight", "stage_split"}
        else:
            assert owner in METHODS and name.startswith(f"{owner}_"), (method, name, owner)


def test_options_that_follow_the_pair_default_to_auto_and_say_so_in_one_form():
    by_pair = []
    for method in METHODS.values():
        hints = typing.get_type_hints(method.config_class)
        for option in fields(method.config_class):
            follows = ByPair in typing.get_args(hints[option.name])
            assert follows == (option.default == BY_PAIR), option.name
            assert option.metadata["help"].endswith(BY_PAIR_HELP) == follows, option.name
            assert ("auto" in option.metadata["help"]) == follows, option.name  # 'auto' means nothing else
            by_pair += [option.name] if follows else []
    assert BY_PAIR_HELP == "'auto': follows the pair (docs/method.md)."
    assert sorted(by_pair) == [
        "fbt_bridge_downsample", "fbt_bridge_type", "fbt_bridge_upsample", "fbt_deep_supervision", "fbt_feature_loss",
        "fbt_transfer_paths",
    ]  # fmt: skip


OLD_NAMES = [(method, old, new) for method, table in RENAMED_OPTIONS.items() for old, new in table.items()]


@pytest.mark.parametrize("method, old, new", OLD_NAMES)
def test_an_option_renamed_since_an_earlier_version_is_refused_naming_its_new_one(method, old, new):
    assert new in method_class(method).config_class.option_names()
    assert all(old not in cls.config_class.option_names() for cls in METHODS.values())
    with pytest.raises(ValueError, match=f"^--{old} was renamed --{new}.$"):
        method_config(method, {old: 1})


def test_old_names_are_refused_in_one_line_naming_each_new_one_or_the_removal():
    with pytest.raises(ValueError) as refused:
        method_config("fbt", {"fbt_infonce_weight": 0.5, "infonce_weight": 0.5, "own_teacher_suffix": True, "logit_weight": 1})
    assert str(refused.value) == (
        "--infonce_weight was renamed --fbt_infonce_weight; --logit_weight was renamed --fbt_logit_weight; "
        "--own_teacher_suffix was removed (docs/method.md says why)."
    )
    for removed in REMOVED_OPTIONS["fbt"]:  # measured harmful or useless (docs/method.md)
        assert all(removed not in cls.config_class.option_names() for cls in METHODS.values())
        with pytest.raises(ValueError, match=rf"^--{removed} was removed \(docs/method.md says why\)\.$"):
            method_config("ofa", {removed: 1})  # whichever method is asked
    # A method that never had the old name: every method's new name for it.
    with pytest.raises(ValueError, match=r"^--feature_weight was renamed, for each method: --feature_kd_weight \(feature_kd\), "):
        method_config("kd", {"feature_weight": 1})
    with pytest.raises(ValueError, match=r"^--infonce_weight was renamed --fbt_infonce_weight\.$"):
        DistillationModel.build(build("hf-vit"), build("hf-resnet"), AUTO_METHOD, {"infonce_weight": 1}, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_options_help_cites_a_benchmark_figure(method):
    for option in fields(method_class(method).config_class):
        assert not BENCHMARK_FIGURE.search(option.metadata["help"]), (option.name, option.metadata["help"])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_methods_config_round_trips_through_json(method):
    changed = {"fbt": {"fbt_deep_supervision": "2,1", "fbt_bridge_upsample": True}, "ofa": {"ofa_stages": "4"}}
    config = method_config(method, changed.get(method))
    as_json = json.loads(json.dumps(config.to_dict()))
    assert method_config(method, as_json) == config and as_json == config.to_dict()
    assert config.changed_options() == {name: as_json[name] for name in changed.get(method, {})}


def test_options_take_the_forms_flags_and_config_files_give_them():
    config = method_config(
        "fbt", {"fbt_infonce_weight": "0.5", "fbt_projector_dim": "8", "fbt_gather_negatives": "false", "fbt_bridge_upsample": False}
    )
    assert (config.fbt_infonce_weight, config.fbt_projector_dim, config.fbt_gather_negatives) == (0.5, 8, False)
    assert config.fbt_bridge_upsample is False
    assert method_config("fitnet", {"fitnet_stage": "2"}).fitnet_stage == 2
    for options, message in [
        ({"fbt_infonce_weight": "high"}, "fbt_infonce_weight takes a number, got 'high'"),
        ({"fbt_gather_negatives": "maybe"}, "fbt_gather_negatives is true or false, got 'maybe'"),
        ({"stage_split": "thirds"}, r"stage_split must be one of \('even', 'ofa'\), got 'thirds'"),
        ({"ofa_gamma": 0.5}, "ofa_gamma must be >= 1"),
        ({"kd_temperature": 0}, "kd_temperature must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            method_config("fbt", options)
    with pytest.raises(ValueError, match=r"fitnet_stage must be one of \(1, 2, 3, 4\), got 5"):
        method_config("fitnet", {"fitnet_stage": 5})


def test_experimental_options_are_fbts_off_by_default_ones():
    config_class = method_class("fbt").config_class
    assert set(config_class.experimental_option_names()) == {
        "fbt_assistant_warmup_steps", "fbt_infonce_feature", "fbt_infonce_mask_same_label"
    }  # fmt: skip
    assert all(not cls.config_class.experimental_option_names() for name, cls in METHODS.items() if name != "fbt")


# ---- ofa ----------------------------------------------------------------------------------------


def test_ofa_defaults_keep_branches_on_stages_1_to_3_and_the_own_logits_as_stage_4():
    config = method_config("ofa")
    assert (config.ofa_stages, config.ofa_branch_weight, config.ofa_final_logits) == ((1, 2, 3), 1.0, True)
    method = build_method("ofa")
    losses, student, teacher, _ = run(method)
    assert set(losses) == LOSS_TERMS["ofa"]
    torch.testing.assert_close(losses["ofa_stage4"], soft_ce(student.logits, teacher.logits))


def test_ofa_published_recipe_sums_four_branches_at_0_1_plus_the_logits_at_1():
    method = build_method("ofa", ofa_stages="1,2,3,4", ofa_branch_weight=0.1)
    assert len(method.branches) == 4
    losses, student, teacher, labels = run(method, grad=True)
    assert set(losses) == {"ce", "ofa_stage1", "ofa_stage2", "ofa_stage3", "ofa_stage4", "ofa_logits"}
    for stage, branch in zip((1, 2, 3, 4), method.branches):
        expected = 0.1 * soft_ce(branch(student.features[stage - 1]), teacher.logits)
        torch.testing.assert_close(losses[f"ofa_stage{stage}"], expected)
    torch.testing.assert_close(losses["ofa_logits"], soft_ce(student.logits, teacher.logits))
    torch.testing.assert_close(losses["ce"], F.cross_entropy(student.logits, labels))
    # The stage-4 branch trains, and through it the student's last stage.
    losses["ofa_stage4"].backward()
    assert method.branches[3].net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.branches[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student_view.stages[3].parameters())


def test_ofa_without_final_logits_or_branches():
    losses, *_ = run(build_method("ofa", ofa_stages="2", ofa_final_logits=False))
    assert set(losses) == {"ce", "ofa_stage2"}
    losses, *_ = run(build_method("ofa", ofa_stages=""))
    assert set(losses) == {"ce", "ofa_stage4"}


@pytest.mark.parametrize("stages", ["5", "1,1", "a", "0", [1, 5]])
def test_stage_lists_are_checked(stages):
    with pytest.raises(ValueError, match=r"^ofa_stages (is a comma list of 1, 2, 3, 4|names an entry twice)"):
        method_config("ofa", {"ofa_stages": stages})
    with pytest.raises(ValueError, match=r"^fbt_deep_supervision (is a comma list|names an entry twice)"):
        method_config("fbt", {"fbt_deep_supervision": stages})


@pytest.mark.parametrize("given", [" 3, 1 ", "1,3", [3, 1], ("1", "3")])
def test_stage_lists_are_tuples_of_stage_numbers_from_text_or_lists(given):
    config = method_config("ofa", {"ofa_stages": given})
    assert config.ofa_stages == (1, 3) and config.to_dict()["ofa_stages"] == [1, 3]
    assert method_config("ofa", {"ofa_stages": ""}).ofa_stages == ()


# ---- fbt ----------------------------------------------------------------------------------------

FBT_INFONCE_TERMS = LOSS_TERMS["fbt"]
# The paper's paths, branches and grid, whose defaults follow the pair (a CNN student of a ViT teacher has others).
FBT_PAPER = dict(fbt_transfer_paths=",".join(PAIRS), fbt_deep_supervision="", fbt_bridge_downsample=1)


def fbt_terms(config) -> set[str]:
    """The loss terms an fbt config logs: both cross-entropies, the feature loss (InfoNCE or RSD) and the logit
    loss per transferring path, one term per deep-supervision branch."""
    paths = [f"{source}_{learner}" for source, learner in config.transfer_pairs]
    feature = config.fbt_feature_loss
    return {"ce", "ce_assistant", *(f"{feature}_{p}" for p in paths), *(f"ofa_{p}" for p in paths)} | {
        f"deep_supervision_stage{k}" for k in config.fbt_deep_supervision
    }


def test_fbt_defaults_are_the_paper_recipe_where_the_student_is_not_a_cnn():
    config = method_config("fbt")
    assert (config.fbt_deep_supervision, config.fbt_transfer_paths, config.fbt_bridge_downsample) == ("auto",) * 3
    assert config.fbt_feature_loss == "auto"
    assert config.fbt_assistant_warmup_steps == 0 and config.fbt_deep_supervision_weight == 1.0
    assert config.fbt_infonce_feature == "stage4" and config.fbt_infonce_mask_same_label is False
    method = build_method("fbt")  # a ResNet teacher, a ViT student: the paper's paths, each learnt with RSD's loss
    resolved = method.config
    assert (resolved.fbt_deep_supervision, resolved.fbt_transfer_paths, resolved.fbt_bridge_downsample) == ((), PAIRS, 1)
    assert resolved.fbt_feature_loss == "rsd" and set(method.rsd_projectors) == set(PAIRS)
    assert not method.projectors and not method.temperatures
    assert len(method.deep_branches) == 0 and not method.student_view.capture_pre_logits
    losses, *_ = run(method)
    assert set(losses) == fbt_terms(resolved) == {"ce", "ce_assistant"} | {f"{kind}_{p}" for kind in ("rsd", "ofa") for p in PAIRS}
    assert method.log_values() == {}
    assert method.changed_options() == small_heads("fbt")  # the card lists what was given, not what the pair chose
    mixer = build_method("fbt", teacher="hf-vit", student="timm-mixer")  # F ends in the student's stage: the paper's
    assert (mixer.config.fbt_deep_supervision, mixer.config.fbt_transfer_paths, mixer.config.fbt_feature_loss) == (
        (), PAIRS, "infonce"
    )
    one_family = build_method("fbt", teacher="hf-deit", student="hf-vit")  # the paper's InfoNCE, its temperatures
    assert one_family.config.fbt_feature_loss == "infonce" and set(run(one_family)[0]) == FBT_INFONCE_TERMS
    assert set(one_family.log_values()) == TEMPERATURES["fbt"]


def test_fbt_for_a_cnn_student_of_a_vit_teacher_adds_ofas_branches_drops_f_to_s_and_halves_the_grid():
    method = build_method("fbt", teacher="hf-vit", student="hf-resnet")  # F: the ResNet's stages, the ViT's last
    config = method.config
    assert config.fbt_transfer_paths == ("teacher_student", "teacher_assistant")
    assert config.fbt_deep_supervision == (1, 2, 3) and config.fbt_bridge_downsample == 2
    assert method.final_infos["assistant"].grid == (4, 4) and len(method.deep_branches) == 3  # the ViT's 8x8, halved
    assert "assistant" not in method.temperatures and set(method.projectors) == {"teacher", "student", "assistant"}
    losses, *_ = run(method)
    assert set(losses) == fbt_terms(config) == {
        "ce", "ce_assistant", "infonce_teacher_student", "infonce_teacher_assistant", "ofa_teacher_student",
        "ofa_teacher_assistant", "deep_supervision_stage1", "deep_supervision_stage2", "deep_supervision_stage3",
    }  # fmt: skip
    assert method.changed_options() == small_heads("fbt")
    given = build_method("fbt", teacher="hf-vit", student="hf-resnet", **FBT_PAPER)  # a value given wins
    assert (given.config.fbt_transfer_paths, given.config.fbt_deep_supervision, given.config.fbt_bridge_downsample) == (
        PAIRS, (), 1
    )
    assert given.changed_options() == small_heads("fbt") | {
        "fbt_transfer_paths": list(PAIRS), "fbt_deep_supervision": [], "fbt_bridge_downsample": 1
    }
    fixed_grid = build_method("fbt", teacher="timm-mixer", student="hf-resnet")  # the Mixer's last stage: its grid only
    assert fixed_grid.config.fbt_bridge_downsample == 1 and fixed_grid.config.fbt_deep_supervision == (1, 2, 3)
    assert method_config("fbt", {"fbt_bridge_downsample": "auto"}).fbt_bridge_downsample == "auto"
    assert method_config("fbt", {"fbt_bridge_downsample": "3", "fbt_deep_supervision": "2"}).fbt_bridge_downsample == 3
    with pytest.raises(ValueError, match=r"fbt_bridge_downsample takes an integer, got 'half'"):
        method_config("fbt", {"fbt_bridge_downsample": "half"})


def test_fbt_bridge_keeps_the_cnn_grid_for_a_vit_student_and_upsamples_for_a_teacher_or_a_mixer_by_default():
    assert (method_config("fbt").fbt_bridge_upsample, method_config("fbt").fbt_bridge_type) == ("auto", "auto")
    to_vit = build_method("fbt")  # a 32 px ResNet's stage 3 is 2x2, the tiny ViT's grid 8x8
    assert to_vit.assistant.config.bridge_upsample is False and to_vit.final_infos["assistant"].grid == (2, 2)
    assert (to_vit.config.fbt_bridge_upsample, to_vit.config.fbt_bridge_type) == (False, "attention")  # resolved
    assert to_vit.options_set_by_pair["fbt_bridge_upsample"] is False
    upsampled = build_method("fbt", fbt_bridge_upsample="true")
    assert upsampled.final_infos["assistant"].grid == (8, 8)
    from_vit = build_method("fbt", teacher="hf-vit", student="hf-resnet", fbt_bridge_downsample=1)  # F's suffix: the ViT's
    assert from_vit.assistant.config.bridge_upsample is True and from_vit.final_infos["assistant"].grid == (8, 8)
    to_mixer = build_method("fbt", student="timm-mixer")  # its token MLP is sized for its own 8x8 grid
    assert to_mixer.assistant.config.bridge_upsample is True
    assert to_mixer.final_infos["assistant"] == to_mixer.student_view.stage_infos[3]
    assert method_config("fbt", {"fbt_bridge_upsample": "false"}).fbt_bridge_upsample is False  # as a flag gives it
    with pytest.raises(ValueError, match=r"fbt_bridge_upsample is true or false, got 'never'"):
        method_config("fbt", {"fbt_bridge_upsample": "never"})
    linear = build_method("fbt", teacher="hf-deit", student="hf-vit")  # one family: a projection suffices
    assert linear.config.fbt_bridge_type == "linear" and linear.assistant.bridge.block is None
    given = build_method("fbt", teacher="hf-deit", student="hf-vit", fbt_bridge_type="attention")
    assert given.assistant.bridge.block is not None and "fbt_bridge_type" not in given.options_set_by_pair


def test_fbt_bridge_downsample_shrinks_the_grid_of_fs_last_stage():
    from_vit = build_method("fbt", teacher="hf-vit", student="hf-resnet", **FBT_PAPER)  # F's suffix: the ViT's 8x8
    halved = build_method("fbt", teacher="hf-vit", student="hf-resnet", **FBT_PAPER | dict(fbt_bridge_downsample=2))
    assert from_vit.final_infos["assistant"].grid == (8, 8) and halved.final_infos["assistant"].grid == (4, 4)
    losses, student, teacher, _ = run(halved)
    assert set(losses) == FBT_INFONCE_TERMS
    fused = halved._assistant_output(student, teacher)
    prefix_tokens = teacher.features[3].shape[1] - 64
    assert fused.last_hidden_state.shape[1] == prefix_tokens + 16  # a quarter of the ViT's 64 patch tokens
    with pytest.raises(ValueError, match=r"fbt_bridge_downsample 2 hands stage 4 .* leave fbt_bridge_downsample at 1"):
        build_method("fbt", student="timm-mixer", fbt_bridge_downsample=2)  # the Mixer's token MLP has a fixed size
    with pytest.raises(ValueError, match=r"fbt_bridge_downsample must be a positive integer, got 0"):
        method_config("fbt", {"fbt_bridge_downsample": 0})


def test_fbt_deep_supervision_branches_learn_the_teachers_logits():
    method = build_method("fbt", fbt_feature_loss="infonce", fbt_deep_supervision="1,3", fbt_deep_supervision_weight=0.1)
    losses, student, teacher, _ = run(method, grad=True)
    assert set(losses) == FBT_INFONCE_TERMS | {"deep_supervision_stage1", "deep_supervision_stage3"}
    for stage, branch in zip((1, 3), method.deep_branches):
        expected = 0.1 * soft_ce(branch(student.features[stage - 1]), teacher.logits)
        torch.testing.assert_close(losses[f"deep_supervision_stage{stage}"], expected)
    losses["deep_supervision_stage1"].backward()
    assert method.deep_branches[0].net[-1].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student_view.stages[0].parameters())
    assert all(p.grad is None for p in method.student_view.stages[1].parameters())  # stage 1's branch stops there


def test_fbt_deep_supervision_follows_the_logit_loss():
    method = build_method("fbt", fbt_deep_supervision="2", fbt_logit_loss="kd", kd_temperature=2.0)
    losses, student, teacher, _ = run(method)
    branch_logits = method.deep_branches[0](student.features[1])
    expected = method.config.fbt_deep_supervision_weight * 4.0 * F.kl_div(
        (branch_logits / 2).log_softmax(-1), (teacher.logits / 2).log_softmax(-1), reduction="batchmean", log_target=True
    )
    torch.testing.assert_close(losses["deep_supervision_stage2"], expected)


ASSISTANT_TERMS = ("infonce_assistant_student", "ofa_assistant_student")


@pytest.mark.parametrize("feature_loss", ["infonce", "rsd"])
def test_fbt_assistant_teaches_the_student_detached_as_a_teacher_would(feature_loss):
    method = build_method("fbt", fbt_feature_loss=feature_loss).train()  # the paper's three paths
    losses, *_ = run(method, grad=True)
    sum(losses[f"{kind}_assistant_student"] for kind in (feature_loss, "ofa")).backward()
    assistant_projector = [p for name, module in method.projectors.items() if name == "assistant" for p in module.parameters()]
    assistant_side = [*method.assistant.parameters(), *assistant_projector]
    assert all(p.grad is None for p in assistant_side)  # S's terms do not move F or F's projector
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student_view.stages[0].parameters())


def test_fbt_assistant_warmup_ramps_the_assistant_to_student_terms():
    method = build_method("fbt", fbt_feature_loss="infonce", fbt_assistant_warmup_steps=10)
    full, *_ = run(build_method("fbt", fbt_feature_loss="infonce"))
    for step, ramp in ((0, 0.0), (5, 0.5), (10, 1.0), (25, 1.0)):
        method.set_progress(step, 100)
        losses, *_ = run(method)
        assert method.log_values()["ramp_assistant_student"] == ramp
        for term in FBT_INFONCE_TERMS:
            expected = ramp * full[term] if term in ASSISTANT_TERMS else full[term]
            torch.testing.assert_close(losses[term], expected, msg=f"{term} at step {step}")


@pytest.mark.parametrize(
    "teacher, student", [("hf-resnet", "hf-vit"), ("hf-vit", "hf-mobilenetv2"), ("timm-convnext", "timm-deit-distilled")]
)
def test_fbt_infonce_on_pre_logits(teacher, student):
    method = build_method("fbt", teacher=teacher, student=student, fbt_feature_loss="infonce", fbt_infonce_feature="pre_logits")
    assert method.student_view.capture_pre_logits and method.teacher_view.capture_pre_logits
    losses, student_out, teacher_out, labels = run(method, grad=True)
    assert set(losses) == fbt_terms(method.config)
    fused = method._assistant_output(student_out, teacher_out)
    inputs = {"teacher": teacher_out.pre_logits, "student": student_out.pre_logits, "assistant": fused.pre_logits}
    for name, x in inputs.items():
        assert x.dim() == 2 and x.shape[1] == method.projectors[name].net[0].in_features
    for source, learner in method.config.transfer_pairs:
        pair = f"{source}_{learner}"
        expected = 0.3 * info_nce(
            method.projectors[source](inputs[source]), method.projectors[learner](inputs[learner]), method.temperatures[pair]()
        )
        torch.testing.assert_close(losses[f"infonce_{pair}"], expected, msg=pair)
    losses["infonce_teacher_student"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student_view.head.parameters())


def test_fbt_pre_logits_refuses_pooling_options():
    with pytest.raises(ValueError, match="pre_logits"):
        method_config("fbt", {"fbt_infonce_feature": "pre_logits", "fbt_infonce_pooling": "2"})
    with pytest.raises(ValueError, match=r"fbt_infonce_feature must be one of \('stage4', 'pre_logits'\), got 'stage3'"):
        method_config("fbt", {"fbt_infonce_feature": "stage3"})


def test_an_option_of_the_feature_loss_the_run_does_not_use_is_refused_naming_the_fix():
    """With fbt_feature_loss auto the pair picks the loss: an option of the other one would silently do nothing."""
    with pytest.raises(UsageError, match=(
        r"^--fbt_infonce_weight applies to fbt_feature_loss infonce, but this run's is rsd \(auto, for this attention "
        r"student and cnn teacher\): pass --fbt_feature_loss infonce to use it, or drop --fbt_infonce_weight\.$"
    )):  # fmt: skip
        build_method("fbt", fbt_infonce_weight=0.5)
    with pytest.raises(UsageError, match=r"^--rsd_kappa applies to fbt_feature_loss rsd, but this run's is infonce \(given\)"):
        build_method("fbt", fbt_feature_loss="infonce", rsd_kappa=0.1, fbt_infonce_weight=0.5)
    with pytest.raises(UsageError, match=r"but this run's is infonce \(auto, for this cnn student and attention teacher\)"):
        build_method("fbt", teacher="hf-vit", student="hf-resnet", rsd_weight=0.2)
    assert build_method("fbt", fbt_feature_loss="infonce", fbt_infonce_weight=0.5).config.fbt_infonce_weight == 0.5
    assert build_method("fbt", rsd_weight=0.2).config.rsd_weight == 0.2  # the pair's rsd reads it


@pytest.mark.parametrize("teacher, student", [("hf-resnet", "hf-vit"), ("hf-vit", "hf-swin"), ("hf-vit", "timm-mixer")])
def test_fbt_infonce_use_cls_is_refused_where_a_model_has_no_class_token(teacher, student):
    with pytest.raises(UsageError, match=r"^--fbt_infonce_use_cls contrasts class tokens, but this pair's .*: leave"):
        build_method("fbt", teacher=teacher, student=student, fbt_infonce_use_cls=True)


def test_fbt_infonce_use_cls_contrasts_the_class_tokens_of_two_vits():
    method = build_method("fbt", teacher="hf-deit", student="hf-vit", fbt_infonce_use_cls=True)
    losses, *_ = run(method)
    assert all(torch.isfinite(value) for value in losses.values())
    assert method.projectors["student"].net[0].in_features == method.final_infos["student"].channels


def test_fbt_infonce_mask_same_label():
    method = build_method("fbt", fbt_feature_loss="infonce", fbt_infonce_mask_same_label=True)
    losses, student, teacher, labels = run(method)
    fused = method._assistant_output(student, teacher)
    features = {"teacher": teacher.features[3], "student": student.features[3], "assistant": fused.last_hidden_state}
    z = {name: method.projectors[name](spatial_smooth(f, method.final_infos[name])) for name, f in features.items()}
    for pair in PAIRS:
        source, learner = pair.split("_")
        tau = method.temperatures[pair]()
        expected = 0.3 * info_nce(z[source], z[learner], tau, labels=labels)
        torch.testing.assert_close(losses[f"infonce_{pair}"], expected, msg=pair)
        assert expected < 0.3 * info_nce(z[source], z[learner], tau)


# ---- every option through one DistillationTrainer step ------------------------------------------

OFA_BRANCHES = {"ofa_stage1", "ofa_stage2", "ofa_stage3", "ofa_stage4"}
OPTION_RUNS = {
    "ofa-published": ("ofa", dict(ofa_stages="1,2,3,4", ofa_branch_weight=0.1), {"ce", *OFA_BRANCHES, "ofa_logits"}, set()),
    "ofa-no-final-logits": ("ofa", dict(ofa_final_logits=False), {"ce", "ofa_stage1", "ofa_stage2", "ofa_stage3"}, set()),
    "fbt-deep-supervision": (
        "fbt",
        INFONCE | dict(fbt_deep_supervision="1,2,3"),
        FBT_INFONCE_TERMS | {f"deep_supervision_stage{k}" for k in (1, 2, 3)},
        set(),
    ),
    "fbt-warmup": ("fbt", INFONCE | dict(fbt_assistant_warmup_steps=2), FBT_INFONCE_TERMS, {"ramp_assistant_student"}),
    "fbt-pre-logits": ("fbt", INFONCE | dict(fbt_infonce_feature="pre_logits"), FBT_INFONCE_TERMS, set()),
    "fbt-mask-same-label": ("fbt", INFONCE | dict(fbt_infonce_mask_same_label=True), FBT_INFONCE_TERMS, set()),
    "fbt-bridge-keeps-the-grid": ("fbt", INFONCE | dict(fbt_bridge_upsample="false"), FBT_INFONCE_TERMS, set()),
    "fbt-bridge-upsamples": ("fbt", INFONCE | dict(fbt_bridge_upsample="true"), FBT_INFONCE_TERMS, set()),
    "fbt-bridge-downsamples": ("fbt", INFONCE | dict(fbt_bridge_downsample=2), FBT_INFONCE_TERMS, set()),
}


@pytest.mark.parametrize("run_id", sorted(OPTION_RUNS))
def test_every_option_trains_one_step_and_logs_its_terms(tmp_path, run_id):
    method, options, terms, values = OPTION_RUNS[run_id]
    trainer = make_trainer(tmp_path, method, max_steps=1, **options)
    given = method_config(method, {**small_heads(method), **options})
    assert trainer.model.method.config == given.for_pair(trainer.model.teacher_view, trainer.model.student_view)
    before = {n: p.detach().clone() for n, p in trainer.model.method.named_parameters()}
    trainer.train()
    (entry,) = training_logs(trainer)
    assert {key.removeprefix("loss_") for key in entry if key.startswith("loss_")} == terms
    assert values | TEMPERATURES.get(method, set()) <= set(entry)
    assert sum(entry[f"loss_{term}"] for term in terms) == pytest.approx(entry["loss"], abs=1e-4 * len(terms))
    # Every part of the method trains (branches, projectors, bridge); the assistant -> student
    # temperature only when that pair's terms are on (the warm-up starts at 0).
    may_rest = {"temperatures.assistant_student.log_tau"} if values else set()
    resting = {n for n, p in trainer.model.method.named_parameters() if torch.equal(p, before[n])}
    assert resting <= may_rest


def test_trainer_reports_progress_to_the_method_before_each_step(tmp_path):
    trainer = make_trainer(tmp_path, "fbt", max_steps=3, fbt_feature_loss="infonce", fbt_assistant_warmup_steps=2)
    seen = []
    method = trainer.model.method
    original = method.set_progress
    method.set_progress = lambda step, max_steps=None: (seen.append((step, max_steps)), original(step, max_steps))
    trainer.train()
    assert seen == [(0, 3), (1, 3), (2, 3)]
    logs = training_logs(trainer)
    assert [entry["ramp_assistant_student"] for entry in logs] == [0.0, 0.5, 1.0]
    assert logs[0]["loss_infonce_assistant_student"] == 0.0 and logs[0]["loss_ofa_assistant_student"] == 0.0
    assert logs[2]["loss_infonce_assistant_student"] > 0


@pytest.mark.parametrize(
    "dropped", ["teacher_student", "teacher_assistant", "assistant_student", "teacher_assistant,assistant_student"]
)
def test_fbt_transfer_paths_drop_their_terms_and_parts(dropped):
    """The paper's ablation: a dropped path has no terms, temperature or unused projector, and every
    parameter left still gets a gradient (nothing DDP would wait for)."""
    kept = [path for path in PAIRS if path not in dropped.split(",")]
    method = build_method("fbt", fbt_feature_loss="infonce", fbt_transfer_paths=",".join(kept))
    method.train()
    losses, *_ = run(method, grad=True)
    expected = {"ce", "ce_assistant", *(f"{kind}_{path}" for path in kept for kind in ("infonce", "ofa"))}
    assert set(losses) == expected
    assert set(method.temperatures) == set(kept)
    assert set(method.projectors) == {name for path in kept for name in path.split("_")}
    sum(losses.values()).backward()
    unused = [name for name, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("kd", {"ce_weight": -1}, "ce_weight is a loss weight, 0 or more"),
        ("feature_kd", {"feature_kd_weight": "-2"}, "feature_kd_weight is a loss weight, 0 or more"),
        ("ofa", {"ofa_branch_weight": -0.1}, "ofa_branch_weight is a loss weight, 0 or more"),
        ("fbt", {"fbt_infonce_weight": -1}, "fbt_infonce_weight is a loss weight, 0 or more"),
        ("fbt", {"fbt_deep_supervision_weight": -1}, "fbt_deep_supervision_weight is a loss weight, 0 or more"),
        ("ofa", {"ofa_branch_dim": 0}, "ofa_branch_dim is a layer width, a positive integer, got 0"),
        ("fbt", {"fbt_projector_dim": "-5"}, "fbt_projector_dim is a layer width, a positive integer, got -5"),
        ("fbt", {"fbt_infonce_temperature": 0}, r"fbt_infonce_temperature .* within \[0.01, 1.0\]; got 0"),
        ("fbt", {"fbt_infonce_temperature": 5}, r"fbt_infonce_temperature .* within \[0.01, 1.0\]; got 5"),
    ],
)
def test_values_no_method_can_train_with_are_refused_with_the_config(method, options, message):
    """A negative weight would train the term backwards, a width under 1 or a temperature outside the learnable
    range fails (or silently does nothing) only once the models are loaded: refused here, before (exit code 2)."""
    with pytest.raises(ValueError, match=message):
        method_config(method, options)
    assert method_config(method, {name: 0 for name in options if name.endswith("_weight")})  # 0 turns a term off


def test_fbt_transfer_paths_are_checked():
    with pytest.raises(ValueError, match="fbt_transfer_paths is a comma list of teacher_student"):
        method_config("fbt", {"fbt_transfer_paths": "teacher_student,student_teacher"})
    with pytest.raises(ValueError, match="fbt_transfer_paths names at least one of teacher_student"):
        method_config("fbt", {"fbt_transfer_paths": ""})
    config = method_config("fbt", {"fbt_transfer_paths": "assistant_student, teacher_student"})
    assert config.fbt_transfer_paths == ("teacher_student", "assistant_student")
    assert config.transfer_pairs == (("teacher", "student"), ("assistant", "student"))


def test_register_method_takes_a_distillation_method():
    from hf_cakd import register_method

    with pytest.raises(TypeError, match="DistillationMethod subclass"):
        register_method("not_a_method", "Not a method")(object)
    assert "not_a_method" not in METHODS
