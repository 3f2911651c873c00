"""The speed benchmark's headline pair and variant rows (no step is timed here)."""

from __future__ import annotations

import pytest

from benchmarks.speed.run import HEADLINE_SIZE, parse_args
from hf_cakd import load_classifier, staged_view


@pytest.mark.slow  # builds ViT-B/16 (86M parameters)
def test_headline_pair_is_vit_b16_and_resnet18_whose_stage3_grid_is_the_vits(tmp_path):
    options = parse_args(
        ["--pair", "headline", "--output_dir", str(tmp_path), "--no_readme", "--variants", '{"fbt, k 2": ["fbt", {"bridge_downsample": 2}]}']
    )
    assert options.image_size == HEADLINE_SIZE == 224
    assert options.variants == {"fbt, k 2": ["fbt", {"bridge_downsample": 2}]}
    labels = {i: str(i) for i in range(10)}
    teacher, student = (load_classifier(spec, labels) for spec in (options.teacher, options.student))
    assert sum(p.numel() for p in teacher.parameters()) // 10**6 == 85  # ViT-B/16 with a 10-class head
    assert sum(p.numel() for p in student.parameters()) // 10**5 == 111  # ResNet-18: 11.2M
    teacher_view, student_view = staged_view(teacher, 224), staged_view(student, 224)
    # As in the paper's pairs, the CNN's stage 3 is as fine as the attention model's grid: F's bridge never upsamples.
    assert student_view.stage_infos[2].grid == teacher_view.stage_infos[2].grid == (14, 14)
