"""benchmarks/gpu: the GPU check's command on a CPU (profile smoke), its time budget, and the data it carries."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from benchmarks.common import REPO, ModelPair, StepRow, StepSettings, benchmark_methods, call_in_fresh_process
from benchmarks.gpu import prepare
from benchmarks.gpu.run import COMPILED_ROW, PROFILES, TimeBudget, _cli_steps, main, markdown_table, measure_rows
from hf_cakd.training.training_args import accelerator_loader_workers


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """What ``python -m benchmarks.gpu.prepare`` writes, from the demo's CIFAR-10 rows instead of ../shared."""
    root = tmp_path_factory.mktemp("gpu-data")
    prepare.write_subset(REPO / "demo_data" / "cifar10", root / prepare.DATASET_NAME, {"train": 64, "test": 16})
    return root


def test_the_subset_is_the_first_rows_with_the_class_names(data, monkeypatch, tmp_path):
    for split, rows in (("train", 64), ("test", 16)):
        source = pq.read_table(REPO / "demo_data" / "cifar10" / f"{split}.parquet")
        subset = pq.read_table(data / "cifar10" / f"{split}.parquet")
        assert subset.equals(source.slice(0, rows)) and subset.schema.metadata == source.schema.metadata
    monkeypatch.setattr(prepare, "MAX_DATA_MB", 0.001)
    with pytest.raises(SystemExit, match="over 0.001 MB: ask for fewer rows"):
        prepare.write_subset(REPO / "demo_data" / "cifar10", tmp_path, {"train": 64})
    with pytest.raises(SystemExit, match="has 5000 rows, fewer than the 6000 asked for"):
        prepare.write_subset(REPO / "demo_data" / "cifar10", tmp_path, {"train": 6000})


def test_smoke_run_measures_every_method_the_pipeline_and_a_resumed_cli_run(data, tmp_path):
    results = main(["--profile", "smoke", "--data", str(data), "--output_dir", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    device = results["device"]
    assert device.endswith("(CPU)") and results["errors"] == {}

    rows = results["steps"]["rows"]
    assert [row["name"] for row in rows] == benchmark_methods() + [COMPILED_ROW]  # the registry's, whatever it holds
    for row in rows:  # peak memory: on a CPU, in this process, the growth of its peak RSS, often 0
        assert row["device"] == device and row["images_per_s"] > 0 and row["peak_memory_mb"] >= 0
        assert row["images_per_s"] == pytest.approx(8 / row["median_step_s"])  # smoke: batch 8
    kd, compiled = rows[benchmark_methods().index("kd")], rows[-1]
    assert kd["step_ratio_to_kd"] == 1.0 and kd["gflops_per_step"] > 0
    assert compiled["training_args"] == {"torch_compile": True, "torch_compile_backend": "eager"}
    assert compiled["gflops_per_step"] is None and compiled["step_ratio_to_kd"] > 0

    pipeline = results["pipeline"]
    assert pipeline["device"] == device and pipeline["num_workers"] == accelerator_loader_workers()
    assert pipeline["batches"] == 3 and pipeline["photos"] == 5 * 8 and pipeline["device_views_ms_per_batch"] > 0
    with_views = 8 / (kd["median_step_s"] + pipeline["device_views_ms_per_batch"] / 1e3)
    assert pipeline["kd_step_with_views_images_per_s"] == pytest.approx(with_views)
    assert pipeline["ratio_to_kd_step"] == pytest.approx(pipeline["images_per_s"] / with_views)

    cli = results["cli"]
    first, resumed = cli["runs"]
    assert cli["device"] == device and cli["steps"] == [2, 3] and cli["method"] == "ofa"  # auto, for a CNN student
    assert (first["exit_code"], first["steps"], first["checkpoint_complete"]) == (0, 2, True)
    assert (resumed["exit_code"], resumed["steps"]) == (0, 1) and cli["resumed_from_first_checkpoint"]
    assert resumed["argv"][-2:] == ["--resume_from_checkpoint", "last"] and "--bf16" in resumed["argv"]
    assert {run["mixed_precision"] for run in cli["runs"]} == {"bf16"}
    assert all(run["images_per_s"] == pytest.approx(run["steps"] * 8 / run["train_seconds"]) for run in cli["runs"])
    assert all(run["peak_memory_mb"] > 0 and run["wall_s"] > 0 for run in cli["runs"])
    assert cli["student_loads"] == {"class": "ResNetForImageClassification", "logits_shape": [1, 10]}

    table = (tmp_path / "table.md").read_text()
    figure_lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line[:6]]
    figures = [line for line in figure_lines if not line.startswith(("| method", "| device", "| run"))]
    assert len(figures) == len(rows) + 1 + 2 and all(device in line for line in figures)
    assert "Resumed from the first run's checkpoint: yes" in table


def test_without_time_every_part_is_skipped_and_says_why(data, tmp_path):
    results = main(["--profile", "smoke", "--data", str(data), "--output_dir", str(tmp_path), "--time_budget", "0.001"])
    skipped = [row["skipped"] for row in results["steps"]["rows"]] + [results[part]["skipped"] for part in ("pipeline", "cli")]
    assert len(skipped) == len(benchmark_methods()) + 1 + 2
    assert all(reason.startswith("skipped: ") and "of the 0 s budget left" in reason for reason in skipped)
    table = (tmp_path / "table.md").read_text()
    assert table.count(f"| {results['device']} | skipped: ") == len(benchmark_methods()) + 1 + 2


def test_a_failing_row_is_recorded_and_the_next_still_measured(data):
    models = REPO / "demo_data" / "models"
    pair = ModelPair(str(models / "resnet-teacher-config"), str(models / "vit-student-config"))
    settings = StepSettings(pair=pair, dataset="", id2label={i: str(i) for i in range(10)}, batch_size=2, steps=1, warmup=0)
    rows = [StepRow("broken", pair, method="no_such_method"), StepRow("none", pair, method="none")]
    broken, measured = measure_rows(rows, settings, PROFILES["smoke"], TimeBudget(60, {}), "row")
    assert broken["error"].startswith("ValueError: Unknown distillation method 'no_such_method'")
    assert measured["images_per_s"] > 0 and "error" not in measured
    table = markdown_table({
        "device": "GPU 0", "machine": {"cpu_count": 16, "torch": "t", "transformers": "t", "accelerate": "a", "timm": "m"},
        "profile": "gpu", "time_budget_s": 420, "settings": {"image_size": 224, "batch_size": 128, "steps": 20, "warmup": 3},
        "steps": {"rows": [broken]}, "pipeline": {"device": "GPU 0", "error": "OSError: no | pipe"},
    })  # fmt: skip
    assert "| broken | GPU 0 | error: ValueError: Unknown" in table and "| GPU 0 | error: OSError: no \\| pipe |" in table


def test_budget_keeps_the_later_parts_minimum_and_shortens_the_cli_run():
    budget = TimeBudget(400, {"row": 20, "pipeline": 40, "compiled": 90, "cli": 90})
    budget.start -= 100  # 300 s left
    assert budget.for_part("row") == pytest.approx(300 - 40 - 90 - 90, abs=0.5)
    assert budget.for_part("compiled") == pytest.approx(300 - 90, abs=0.5)
    assert budget.refusal("row") is None
    budget.start -= 150  # 150 s left: not a row (needs 20 beside 220), a CLI run
    assert "150 s of the 400 s budget left, 20 s needed" in budget.refusal("row") and budget.refusal("cli") is None
    # 150 s for the CLI, 90 of them for starts and evaluations: 60 s of steps at 0.1 s x 1.25 -> 480 steps fit
    profile = PROFILES["gpu"]
    assert _cli_steps(profile, [{"median_step_s": 0.1}], budget) == (200, 300)
    # at 0.4 s a step, 120 fit: 300 steps scaled by 60 / 150 = 0.4
    assert _cli_steps(profile, [{"median_step_s": 0.2}, {"median_step_s": 0.4}, {"error": "x"}], budget) == (80, 120)


def test_a_fresh_process_past_its_time_is_stopped():
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="sleep took more than 2 s; stopped"):
        call_in_fresh_process(time.sleep, 120, timeout=2)
    assert time.perf_counter() - start < 30


@pytest.mark.slow  # the command itself, each row, the pipeline and each CLI run in a process of its own: minutes
def test_the_command_in_fresh_processes(data, tmp_path):
    command = [sys.executable, "-m", "benchmarks.gpu", "--profile", "smoke", "--fresh_processes"]
    subprocess.run([*command, "--data", str(data), "--output_dir", str(tmp_path)], cwd=REPO, check=True)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {} and [run["exit_code"] for run in results["cli"]["runs"]] == [0, 0]
    assert all(row["peak_memory_mb"] > 0 for row in results["steps"]["rows"])
    assert results["cli"]["resumed_from_first_checkpoint"]
