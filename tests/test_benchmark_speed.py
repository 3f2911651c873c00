"""The speed benchmark's headline pair, variant rows and photo pipeline table (no step is timed here)."""

from __future__ import annotations

import PIL.Image
import pytest

from benchmarks.common import HEADLINE_SIZE, REPO, ModelPair, StepSettings
from benchmarks.photos import PHOTOS, make_photo_set
from benchmarks.speed.run import measure_photo_pipeline, parse_args, photo_pipeline_table
from hf_cakd import load_classifier, staged_view
from hf_cakd.data import load_image_dataset


@pytest.mark.slow  # builds ViT-B/16 (86M parameters)
def test_headline_pair_is_vit_b16_and_resnet18_whose_stage3_grid_is_the_vits(tmp_path):
    options = parse_args(
        ["--pair", "headline", "--output_dir", str(tmp_path), "--no_readme", "--variants", '{"fbt, k 2": ["fbt", {"fbt_bridge_downsample": 2}]}']
    )
    assert options.image_size == HEADLINE_SIZE == 224
    assert options.variants == {"fbt, k 2": ["fbt", {"fbt_bridge_downsample": 2}]}
    labels = {i: str(i) for i in range(10)}
    teacher, student = (load_classifier(spec, labels) for spec in (options.teacher, options.student))
    assert sum(p.numel() for p in teacher.parameters()) // 10**6 == 85  # ViT-B/16 with a 10-class head
    assert sum(p.numel() for p in student.parameters()) // 10**5 == 111  # ResNet-18: 11.2M
    teacher_view, student_view = staged_view(teacher, 224), staged_view(student, 224)
    # As in the paper's pairs, the CNN's stage 3 is as fine as the attention model's grid: F's bridge never upsamples.
    assert student_view.stage_infos[2].grid == teacher_view.stage_infos[2].grid == (14, 14)


def test_photo_set_is_an_imagefolder_of_the_six_photos_at_imagenet_size(tmp_path):
    root = make_photo_set(tmp_path / "photos", 12, seed=0)
    data = load_image_dataset(str(root))
    assert len(data.train) == 12 and sorted(data.id2label.values()) == sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    sizes = [PIL.Image.open(path).size for path in sorted(root.glob("*/*.jpg"))]
    assert all(max(size) == 500 and min(size) >= 330 for size in sizes) and len(set(sizes)) > 3
    again = make_photo_set(tmp_path / "again", 12, seed=0, workers=2)  # the same files, made in parallel
    contents = [[path.read_bytes() for path in sorted(made.glob("*/*.jpg"))] for made in (root, again)]
    assert contents[0] == contents[1]


def test_photo_pipeline_table_gives_the_ratios_and_the_cores_a_gpu_needs():
    measured = {
        "photos": 512, "batch_size": 64, "rounds": 3, "device_views_ms_per_batch": 1.5,
        "images_per_cpu_s": {
            "before": {"student": 160, "distillation": 100}, "after": {"student": 200, "distillation": 196}
        },
        "gflop_per_image": 40.0, "gpu_tflops": 400.0,
    }
    lines = photo_pipeline_table(measured, {"image_size": 224}, {"device": "cuda"})
    assert "| before: each model's on the CPU | 160 | 100 | 62 % |" in lines
    assert "| after: made on the device | 200 | 196 | 98 % |" in lines
    assert "runs it at 10,000 images/s, which takes 100 cores like this one's before and 51 after" in lines[-1]


@pytest.mark.slow  # times the pipeline 12 times on 192 photos
def test_photo_pipeline_times_both_views_before_and_after_per_cpu_second():
    models = REPO / "demo_data" / "models"
    pair = ModelPair(str(models / "resnet-teacher-config"), str(models / "vit-student-config"))
    settings = StepSettings(pair=pair, dataset="", id2label={})  # 32 px: the views, not the size, are timed
    measured = measure_photo_pipeline(settings, photos=192)
    rates = measured["images_per_cpu_s"]
    assert set(rates) == {"before", "after"} and all(rate > 0 for views in rates.values() for rate in views.values())
    assert measured["device_views_ms_per_batch"] > 0
    assert all(len(rounds) == 3 for rounds in measured["rounds_measured"].values())
    before = measured["rounds_measured"]["before, distillation"][0]
    assert before["batches"] == 2 and "device_views_ms_per_batch" not in before  # each model's views on the CPU
