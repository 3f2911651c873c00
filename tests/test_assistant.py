"""The FBT assistant F (docs/method.md, "fbt"): who gives the prefix, what trains, what is reused,
what is saved, and how the bridge changes layouts."""

import os

import pytest
import torch
import transformers
from safetensors.torch import load_file
from torch import nn

from hf_cakd.assistant import AssistantModel, FusionBridge
from hf_cakd.backbones import FAMILIES, StageInfo, staged_view
from hf_cakd.backbones.base import ofa_split_sizes, resplit
from hf_cakd.errors import UsageError
from tiny_models import IMAGE_SIZE, NUM_LABELS, TINY_MODELS, build

BATCH = 2

# (teacher, student): every ordered family pair of cnn/attention/mlp; ResNet, MobileNetV2, ConvNeXt,
# ViT, Swin, Mixer and ResMLP each teach and learn at least once; transformers and timm both appear.
PAIRS = [
    ("timm-convnext", "hf-mobilenetv2"),  # cnn -> cnn
    ("hf-resnet", "timm-convnext"),  # cnn -> cnn
    ("timm-resnet", "hf-vit"),  # cnn -> attention
    ("timm-mobilenetv2", "hf-swin"),  # cnn -> attention
    ("hf-convnext", "timm-resmlp"),  # cnn -> mlp
    ("timm-swin", "hf-resnet"),  # attention -> cnn
    ("timm-vit", "hf-convnext"),  # attention -> cnn
    ("hf-vit", "timm-swin"),  # attention -> attention
    ("hf-swin", "timm-mixer"),  # attention -> mlp
    ("timm-mixer", "timm-mobilenetv2"),  # mlp -> cnn
    ("timm-resmlp", "timm-vit"),  # mlp -> attention
    ("timm-resmlp", "timm-mixer"),  # mlp -> mlp
]


def family(name):
    return TINY_MODELS[name][0]


def trained_like(name, seed):
    """A tiny model without all-zero weight matrices.

    timm zero-initialises the Mixer/ResMLP classifier; a trained one is not zero, and a zero head
    would pass no gradient back to the stage and bridge under test.
    """
    model = build(name, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(std=0.02)
    return model


def frozen_teacher(name):
    """A teacher as the trainer holds it: no gradients, eval mode."""
    return trained_like(name, seed=0).requires_grad_(False).eval()


def assistant_for(teacher_name, student_name):
    teacher, student = frozen_teacher(teacher_name), trained_like(student_name, seed=1)
    assistant = AssistantModel.from_teacher_student(teacher, student, IMAGE_SIZE, IMAGE_SIZE)
    return assistant.eval(), teacher, student


def pixels(seed=0):
    return torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def params_of(*modules):
    return {id(p): p for module in modules for p in module.parameters()}


def test_pairs_cover_every_family_pair_and_architecture():
    assert {(family(t), family(s)) for t, s in PAIRS} == {(a, b) for a in FAMILIES for b in FAMILIES}
    architectures = ("resnet", "mobilenetv2", "convnext", "vit", "swin", "mixer", "resmlp")
    for arch in architectures:
        assert any(t.endswith(f"-{arch}") for t, _ in PAIRS), f"{arch} never teaches"
        assert any(s.endswith(f"-{arch}") for _, s in PAIRS), f"{arch} never learns"
    names = {n for pair in PAIRS for n in pair}
    assert any(n.startswith("hf-") for n in names) and any(n.startswith("timm-") for n in names)


@pytest.mark.parametrize("teacher_name,student_name", PAIRS)
def test_builds_with_the_method_prefix_and_trains_only_bridge_and_student(teacher_name, student_name):
    teacher_family, student_family = family(teacher_name), family(student_name)
    teacher, student = frozen_teacher(teacher_name), trained_like(student_name, seed=1)
    before = {id(p): p.detach().clone() for p in [*teacher.parameters(), *student.parameters()]}
    assistant = AssistantModel.from_teacher_student(teacher, student, IMAGE_SIZE, IMAGE_SIZE).eval()

    # docs/method.md: the CNN of a CNN / non-CNN pair gives the prefix, otherwise the student.
    if (teacher_family == "cnn") != (student_family == "cnn"):
        expected_prefix = "teacher" if teacher_family == "cnn" else "student"
    else:
        expected_prefix = "student"
    assert assistant.config.prefix_role == expected_prefix
    prefix_model, suffix_model = (teacher, student) if expected_prefix == "teacher" else (student, teacher)
    assert assistant.prefix.model is prefix_model and assistant.suffix.model is suffix_model
    same_family = assistant.prefix.family == assistant.suffix.family
    assert assistant.config.bridge_type == ("linear" if same_family else "attention")

    # Building F neither copies nor re-initialises the models it is made of.
    assert all(torch.equal(p, before[id(p)]) for p in [*teacher.parameters(), *student.parameters()])
    # The bridge is F's only registered parameters; the shared stages belong to T and S.
    assert params_of(assistant).keys() == params_of(assistant.bridge).keys()
    assert len(list(assistant.parameters())) == len(list(assistant.bridge.parameters())) > 0

    output = assistant(pixels(), labels=torch.tensor([0, 1]))
    assert output.logits.shape == (BATCH, NUM_LABELS)
    output.loss.backward()

    for name, p in assistant.bridge.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"bridge.{name} got no gradient"
    if expected_prefix == "student":
        used = {"stem": assistant.prefix.stem, **{f"stage{i + 1}": assistant.prefix.stages[i] for i in range(3)}}
    else:
        used = {"stage4": assistant.suffix.stages[3], "head": assistant.suffix.head}
    for module_name, module in used.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"student {module_name} got no gradient"
    unused = params_of(student).keys() - params_of(*used.values()).keys()
    assert all(params_of(student)[i].grad is None for i in unused), "F reached student modules it is not made of"
    assert all(p.grad is None for p in teacher.parameters()), "a teacher parameter got a gradient"


@pytest.mark.parametrize("teacher_name,student_name", PAIRS)
def test_cached_stage3_skips_the_prefix_and_gives_the_same_logits(teacher_name, student_name):
    assistant, _, _ = assistant_for(teacher_name, student_name)
    prefix = assistant.prefix
    pixel_values = pixels()
    with torch.no_grad():
        # What the fbt method passes: stage 3 of the forward pass the prefix model made anyway.
        cached = prefix(pixel_values).features[2]
        calls = []
        hooks = [
            module.register_forward_hook(lambda *_, name=name: calls.append(name))
            for name, module in [("stem", prefix.stem), *((f"stage{i + 1}", prefix.stages[i]) for i in range(3))]
        ]
        try:
            full = assistant(pixel_values).logits
            assert calls == ["stem", "stage1", "stage2", "stage3"]
            calls.clear()
            reused = assistant(prefix_stage3=cached).logits
            assert calls == []
        finally:
            for hook in hooks:
                hook.remove()
    torch.testing.assert_close(reused, full, rtol=0, atol=1e-6)


def test_forward_needs_an_input():
    assistant, _, _ = assistant_for("hf-resnet", "hf-vit")
    with pytest.raises(ValueError, match="pixel_values or prefix_stage3"):
        assistant()


def test_save_pretrained_writes_only_the_bridge_and_reloads_around_the_same_models(tmp_path):
    assistant, teacher, student = assistant_for("hf-resnet", "hf-vit")
    expected = assistant(pixels()).logits
    assistant.save_pretrained(tmp_path)

    saved = load_file(os.path.join(tmp_path, "model.safetensors"))
    assert all(key.startswith("bridge.") for key in saved)
    assert saved.keys() == assistant.bridge.state_dict(prefix="bridge.").keys()

    reloaded = transformers.AutoModel.from_pretrained(tmp_path, teacher=teacher, student=student).eval()
    assert isinstance(reloaded, AssistantModel)
    assert reloaded.prefix.model is teacher and reloaded.suffix.model is student
    torch.testing.assert_close(reloaded(pixels()).logits, expected, rtol=0, atol=0)


def test_reload_with_another_student_architecture_is_refused(tmp_path):
    assistant, teacher, _ = assistant_for("hf-resnet", "hf-vit")
    assistant.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pass the same teacher and student"):
        transformers.AutoModel.from_pretrained(tmp_path, teacher=teacher, student=build("hf-swin"))


def test_reload_of_a_shared_assistant_without_its_models_is_refused(tmp_path):
    assistant, teacher, _ = assistant_for("hf-resnet", "hf-vit")
    assistant.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="teacher=teacher, student=student"):
        transformers.AutoModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="both"):
        transformers.AutoModel.from_pretrained(tmp_path, teacher=teacher)


@pytest.mark.parametrize("teacher_name,student_name", [("hf-resnet", "hf-vit"), ("timm-resnet", "timm-swin")])
def test_save_standalone_reloads_without_teacher_or_student(tmp_path, teacher_name, student_name):
    assistant, _, _ = assistant_for(teacher_name, student_name)
    expected = assistant(pixels()).logits
    assistant.save_standalone(tmp_path)

    reloaded = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, AssistantModel)
    # The standalone F owns its modules: they are registered, saved and loaded with it.
    assert params_of(reloaded).keys() >= params_of(reloaded.prefix, reloaded.suffix, reloaded.bridge).keys()
    torch.testing.assert_close(reloaded(pixels()).logits, expected, rtol=0, atol=0)


def test_save_standalone_names_the_bare_timm_model_it_cannot_rebuild(tmp_path):
    assistant, _, _ = assistant_for("hf-resnet", "timm-mixer")
    with pytest.raises(ValueError, match="MlpMixer.*TimmWrapperForImageClassification"):
        assistant.save_standalone(tmp_path)


# FusionBridge: one source layout in, the target's layout out.


def test_bridge_map_to_tokens_prepends_the_targets_prefix_tokens():
    source = StageInfo("map", 24, (4, 4))
    target = StageInfo("tokens", 32, (2, 2), num_prefix_tokens=1)
    bridge = FusionBridge(source, target, "attention")
    assert isinstance(bridge.resample, nn.Conv2d) and bridge.resample.stride == (2, 2)  # a patch embedding
    out = bridge(torch.randn(BATCH, 24, 4, 4))
    assert out.shape == (BATCH, 1 + 2 * 2, 32)
    for image in out:
        torch.testing.assert_close(image[:1], bridge.prefix_tokens[0])


@pytest.mark.parametrize(
    "source_grid,target_grid,resampler",
    [
        ((8, 8), (4, 4), nn.Conv2d),  # down by 2: patch embedding
        ((2, 2), (4, 4), nn.ConvTranspose2d),  # up by 2
        ((4, 4), (4, 4), nn.Conv2d),  # same grid: 1x1 convolution
        ((6, 6), (4, 4), nn.AdaptiveAvgPool2d),  # non-integer ratio down
        ((3, 3), (4, 4), nn.AdaptiveAvgPool2d),  # non-integer ratio up
        ((8, 4), (4, 4), nn.AdaptiveAvgPool2d),  # different ratios per axis
    ],
)
@pytest.mark.parametrize("bridge_type", ["linear", "attention"])
def test_bridge_map_to_map(source_grid, target_grid, resampler, bridge_type):
    bridge = FusionBridge(StageInfo("map", 8, source_grid), StageInfo("map", 16, target_grid), bridge_type)
    first = bridge.resample[0] if isinstance(bridge.resample, nn.Sequential) else bridge.resample
    assert isinstance(first, resampler)
    if source_grid == target_grid:
        assert bridge.resample.kernel_size == (1, 1)
    assert bridge(torch.randn(BATCH, 8, *source_grid)).shape == (BATCH, 16, *target_grid)


def test_bridge_tokens_to_map_drops_prefix_tokens_and_keeps_positions():
    source = StageInfo("tokens", 8, (3, 5), num_prefix_tokens=2)
    target = StageInfo("map", 4, (3, 5))
    bridge = FusionBridge(source, target, "linear")
    nn.init.zeros_(bridge.resample.bias)
    tokens = torch.zeros(1, 2 + 3 * 5, 8)
    tokens[:, :2] = torch.randn(1, 2, 8)  # prefix tokens: must not reach the map
    tokens[:, 2 + 1 * 5 + 3] = torch.randn(8)  # the spatial token at row 1, column 3
    out = bridge(tokens)
    assert out.shape == (1, 4, 3, 5)
    nonzero = out.abs().sum(1)[0] > 0
    assert nonzero.nonzero().tolist() == [[1, 3]]


def test_bridge_type_is_validated():
    info = StageInfo("map", 8, (4, 4))
    with pytest.raises(ValueError, match="bridge_type must be one of"):
        FusionBridge(info, info, "mlp")
    with pytest.raises(ValueError, match="bridge_type must be one of"):
        AssistantModel.from_teacher_student(build("hf-resnet"), build("hf-vit"), bridge_type="conv")


def test_an_assistant_on_ofa_split_views_reloads_with_the_same_suffix_stage(tmp_path):
    teacher, student = build("hf-resnet", seed=1), build("hf-vit", seed=2)
    views = [resplit(staged_view(model, IMAGE_SIZE), "ofa") for model in (teacher, student)]
    assistant = AssistantModel.from_views(*views, stage_split="ofa").eval()
    assistant.save_pretrained(tmp_path)
    reloaded = AssistantModel.from_pretrained(tmp_path, teacher=teacher, student=student).eval()
    assert reloaded.config.stage_split == "ofa"
    assert [len(s) for s in reloaded.suffix.stages] == [len(s) for s in assistant.suffix.stages] == ofa_split_sizes(
        sum(len(s) for s in assistant.suffix.stages)
    )
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).logits, assistant(pixel_values).logits)


SUFFIXES = sorted(name for name, (kind, _) in TINY_MODELS.items() if kind != "cnn")


@pytest.mark.parametrize("suffix_name", SUFFIXES)
def test_a_bridge_that_never_upsamples_keeps_the_cnn_grid_where_the_suffix_runs_on_any_grid(suffix_name, tmp_path):
    teacher, student = build("hf-resnet", seed=1), build(suffix_name, seed=2)
    views = [staged_view(model, IMAGE_SIZE) for model in (teacher, student)]
    source, target = views[0].stage_infos[2], views[1].stage_infos[2]
    assert source.grid == (2, 2) and target.grid[0] > 2  # a 32 px ResNet's stage 3 is smaller than any suffix grid
    upsampling = AssistantModel.from_views(*views, bridge_upsample=True).eval()
    assert upsampling.final_stage_info == views[1].stage_infos[3]
    auto = AssistantModel.from_views(*views)  # bridge_upsample "auto", follows the pair: a student's suffix keeps it where it can
    assert auto.config.bridge_upsample is not views[1].runs_on_any_grid
    if not views[1].runs_on_any_grid:
        with pytest.raises(ValueError, match=r"^fbt_bridge_upsample false hands .* fbt_bridge_upsample at true or auto") as refused:
            AssistantModel.from_views(*views, bridge_upsample=False)
        assert isinstance(refused.value, UsageError)  # the CLI prints it as one line and exits with 2
        return
    assistant = AssistantModel.from_views(*views, bridge_upsample=False).eval()
    assert assistant.final_stage_info == StageInfo("tokens", target.channels, (2, 2), target.num_prefix_tokens)
    pixel_values = pixels(seed=4)
    with torch.no_grad():
        output = assistant(pixel_values)
        assert output.last_hidden_state.shape == (BATCH, target.num_prefix_tokens + 4, target.channels)
        upsampled = upsampling(pixel_values).last_hidden_state
        assert upsampled.shape[1] == target.num_prefix_tokens + target.grid[0] * target.grid[1]
    assert output.logits.shape == (BATCH, NUM_LABELS)
    assistant.save_pretrained(tmp_path)
    reloaded = AssistantModel.from_pretrained(tmp_path, teacher=teacher, student=student).eval()
    assert reloaded.config.bridge_upsample is False
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).logits, output.logits)


def test_a_bridge_that_never_upsamples_still_downsamples():
    big, small = StageInfo("map", 8, (8, 8)), StageInfo("tokens", 16, (4, 4), 1)
    for upsample in (True, False):
        bridge = FusionBridge(big, small, upsample=upsample)
        assert bridge.target == small
        assert bridge(torch.randn(2, 8, 8, 8)).shape == (2, 1 + 16, 16)
    assert FusionBridge(StageInfo("map", 8, (2, 2)), small, upsample=False).target.grid == (2, 2)
