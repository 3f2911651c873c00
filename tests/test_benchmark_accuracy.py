"""benchmarks/accuracy without training: which runs are left, what results.json collects from run
folders and from the committed record, the validation split, the validation-screen table."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from benchmarks.accuracy import run as bench_module


@pytest.fixture(scope="module")
def bench():
    return bench_module


def options(bench, output_dir: Path, *argv: str):
    return bench.parse_args(["--profile", "smoke", "--output_dir", str(output_dir), "--report_only", *argv])


def finish(directory: Path, top1: float, assistant: float | None = None) -> None:
    """A run folder as a finished distill run leaves it (only what the benchmark reads)."""
    metrics = {"student": {"top1": top1, "top5": 1.0}, "teacher": {"top1": 0.7, "top5": 1.0}}
    if assistant is not None:
        metrics["assistant"] = {"top1": assistant, "top5": 1.0}
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps({"metrics": metrics, "train_seconds": 60.0}))


def models(bench):
    return {role: {"name": role, "spec": role, "params": 1, "family": "cnn", "image_size": 32} for role in bench.QUICK_MODELS}


def test_a_fresh_clone_resumes_from_the_committed_results(bench, tmp_path):
    profile = bench.PROFILES["smoke"]
    opts = options(bench, tmp_path)
    planned = bench.pending_runs(profile, opts)
    tuning = sum(
        len(settings)
        for pair in bench.PAIRS
        for method, settings in bench.TUNING.items()
        if pair in bench.TUNING_PAIRS.get(method, bench.PAIRS)
    )
    assert bench.TUNING_PAIRS["fbt"] == ("cnn_to_vit", "vit_to_cnn")  # the Mixer suffix runs on its own grid only
    per_pair = len(profile.seeds) * len(bench.benchmark_methods()) + len(bench.ABLATIONS)
    assert len(planned) == tuning + len(bench.PAIRS) * per_pair
    assert [run.validation for run in planned[:tuning]] == [True] * tuning  # the screen comes first
    assert {run.pair for run in planned[:tuning] if run.method == "fbt"} == {"cnn_to_vit", "vit_to_cnn"}

    finish(bench._teacher_dir(tmp_path, "cnn_teacher"), 0.7)
    finish(bench._run_dir(tmp_path, "cnn_to_vit", "none", 0), 0.40)
    finish(bench._run_dir(tmp_path, "cnn_to_vit", "fbt", 0), 0.46, assistant=0.65)
    finish(bench._ablation_dir(tmp_path, "cnn_to_vit", "without F -> S"), 0.45, assistant=0.64)
    finish(bench._tuning_dir(tmp_path, "cnn_to_vit", "kd", "T=8"), 0.41)
    results = bench.collect_results("smoke", profile, opts, models(bench))
    pair = results["pairs"]["cnn_to_vit"]
    assert pair["teacher_top1_range"] == [0.7, 0.7] and pair["methods"]["none"]["top1"] == {"mean": 0.40, "std": 0.0}
    assert pair["methods"]["fbt"]["assistant_top1"]["mean"] == 0.65 and pair["methods"]["fbt"]["runs"][0]["teacher_top1"] == 0.7
    assert results["ablation"]["cnn_to_vit"]["without F -> S"]["top1"] == 0.45
    assert results["tuning"]["cnn_to_vit"]["kd"]["T=8"]["options"] == {"kd_temperature": 8.0}
    assert "cnn_to_vit ofa seed 0" in results["missing"] and "teacher vit_teacher" in results["missing"]
    assert len(results["missing"]) == 1 + len(planned) - 4  # the ViT teacher, and all runs but four
    shutil.rmtree(bench._teacher_dir(tmp_path, "cnn_teacher"))
    finish(bench._teacher_dir(tmp_path, "cnn_teacher"), 0.75)  # retrained: the runs above were taught by 0.7
    retrained = bench.collect_results("smoke", profile, opts, models(bench))
    assert retrained["teachers"]["cnn_teacher"]["top1"] == 0.75 and retrained["pairs"]["cnn_to_vit"]["teacher_top1_range"] == [0.7, 0.7]

    # The run folders are not in git: a clone holds only results.json, and resumes from it.
    (tmp_path / "results.json").write_text(json.dumps(results))
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "results.json").write_text(json.dumps(results))
    left = bench.pending_runs(profile, options(bench, clone))
    assert len(left) == len(planned) - 4
    assert not {run.label for run in left} & {"cnn_to_vit none seed 0", "cnn_to_vit kd T=8 seed 0 (validation)"}
    again = bench.collect_results("smoke", profile, options(bench, clone), models(bench))
    assert again["pairs"] == results["pairs"] and again["tuning"] == results["tuning"]
    assert again["machines"] == results["machines"] and len(results["machines"]) == 1  # one machine trained all

    # Runs kept from a record trained elsewhere: the table names both machines.
    here = results["machines"][0]
    results["machines"] = [here | {"cpu": "Elsewhere CPU", "cpu_count": 8}]
    (clone / "results.json").write_text(json.dumps(results))
    again = bench.collect_results("smoke", profile, options(bench, clone), models(bench))
    assert [machine["cpu"] for machine in again["machines"]] == ["Elsewhere CPU", here["cpu"]]
    assert f"Trained on cpu (Elsewhere CPU, 8 cores) and cpu ({here['cpu']}, " in bench.markdown_table(again)

    # A record of another schedule is not this benchmark's: nothing is taken from it.
    results["schedule"]["epochs"] = 99
    (clone / "results.json").write_text(json.dumps(results))
    assert len(bench.pending_runs(profile, options(bench, clone))) == len(planned)


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_validation_split_is_the_last_tenth_of_the_train_split(bench, tmp_path):
    features = Features(img=Image(), label=ClassLabel(names=["a", "b"]), row=Value("int32"))
    rows = {"img": [{"bytes": png(i), "path": None} for i in range(30)], "label": [i % 2 for i in range(30)]}
    source = tmp_path / "cifar"
    source.mkdir()
    Dataset.from_dict(rows | {"row": list(range(30))}, features=features).to_parquet(str(source / "train.parquet"))
    Dataset.from_dict(rows | {"row": list(range(30))}, features=features).select(range(5)).to_parquet(
        str(source / "test.parquet")
    )
    target = bench.validation_data(str(source), tmp_path / "out")
    assert sorted(path.name for path in target.iterdir()) == ["train.parquet", "validation.parquet"]
    split = bench.load_image_dataset(str(target), eval_split="validation")
    assert split.train["row"] == list(range(27)) and split.eval["row"] == [27, 28, 29]
    assert split.id2label == {0: "a", 1: "b"}


def test_screen_table_marks_the_best_setting_per_pair(bench):
    def run(top1):
        return {"seed": 0, "top1": top1}

    results = {
        "schedule": {"seeds": [0, 1, 2]},
        "tuning": {
            "p1": {
                "kd": {"T=2": run(0.30), "T=4": run(0.32), "T=8": run(0.31)},
                "fbt": {"bridge upsamples": run(0.45) | {"assistant_top1": 0.6}},
            },
            "p2": {"kd": {"T=2": run(0.50), "T=4": run(0.40)}},
        },
    }
    lines = bench.tuning_table(results)
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| kd |")}
    assert rows["T=2: `--kd_temperature 2.0`"].endswith("| 30.00 | **50.00** | 40.00 |")
    assert rows["T=4 (default)"].endswith("| **32.00** | 40.00 | 36.00 |")
    assert rows["T=8: `--kd_temperature 8.0`"].endswith("| 31.00 | - | - |")  # one pair missing: no mean
    assert not any(line.startswith("| ofa |") and "**" in line for line in lines)
    fbt = [line for line in lines if line.startswith("| fbt |")]
    assert fbt[0].endswith("| **45.00**, F 60.00 | - | - |")  # F beside its student


def test_parts_of_the_benchmark_are_selected_by_flag(bench, tmp_path):
    profile = bench.PROFILES["smoke"]
    only = bench.pending_runs(
        profile, options(bench, tmp_path, "--parts", "ablation", "tuning", "--pairs", "cnn_to_mlp", "--methods", "kd",
                         "--ablations", "without F -> S")
    )
    assert [run.label for run in only] == [
        f"cnn_to_mlp kd {setting} seed 0 (validation)" for setting in bench.TUNING["kd"]
    ] + ["cnn_to_mlp fbt without F -> S seed 0"]
    assert only[-1].method_config == {"fbt_transfer_paths": "teacher_student,teacher_assistant"}
    published = bench.pending_runs(
        profile, options(bench, tmp_path, "--parts", "tuning", "--pairs", "cnn_to_mlp", "--settings", "published recipe")
    )
    assert [run.label for run in published] == ["cnn_to_mlp ofa published recipe seed 0 (validation)"]
