"""The accuracy benchmark (benchmarks/accuracy) without training: which runs are left, what results.json collects from run
folders and from the committed record, the validation split, the validation-screen table."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Image, Value
import pytest
from PIL import Image as PILImage
from transformers import ViTForImageClassification

from benchmarks.accuracy import profiles
from benchmarks.accuracy.report import ablation_table, markdown_table, tuning_table, write_report
from benchmarks.accuracy.results import collect_results
from benchmarks.accuracy.teachers.build import KEPT_FILES, weights_digest
from benchmarks.accuracy.run import main, parse_args
from benchmarks.accuracy.runs import (
    BENCHMARK_PARTS,
    ablation_dir,
    pending_runs,
    planned_runs,
    run_benchmark,
    run_dir,
    teacher_dir,
    tuning_dir,
    seed_row,
    validation_data,
    with_screen_rows,
)
from benchmarks.common import benchmark_methods
from hf_cakd import load_classifier, staged_view
from hf_cakd.data import load_image_dataset


def options(output_dir: Path, *argv: str):
    return parse_args(["--profile", "smoke", "--output_dir", str(output_dir), "--report_only", *argv])


def finish(directory: Path, top1: float, assistant: float | None = None, method_config: dict | None = None) -> None:
    """A run folder as a finished distill run leaves it (only what the benchmark reads)."""
    metrics = {"student": {"top1": top1, "top5": 1.0}, "teacher": {"top1": 0.7, "top5": 1.0}}
    if assistant is not None:
        metrics["assistant"] = {"top1": assistant, "top5": 1.0}
    directory.mkdir(parents=True)
    results = {"metrics": metrics, "train_seconds": 60.0} | ({"method_config": method_config} if method_config else {})
    (directory / "results.json").write_text(json.dumps(results))


def models():
    return {role: {"name": role, "spec": role, "params": 1, "family": "cnn", "image_size": 32} for role in profiles.QUICK_MODELS}


def test_a_fresh_clone_resumes_from_the_committed_results(tmp_path):
    profile = profiles.PROFILES["smoke"]
    opts = options(tmp_path)
    planned = pending_runs(profile, opts)
    tuning = sum(
        len(settings)
        for pair in profiles.PAIRS
        for method, settings in profiles.TUNING.items()
        if pair in profiles.TUNING_PAIRS.get(method, profiles.PAIRS)
    )
    assert profiles.TUNING_PAIRS["fbt"] == ("cnn_to_vit", "vit_to_cnn")  # the Mixer suffix runs on its own grid only
    per_pair = len(profile.seeds) * len(benchmark_methods()) + len(profiles.ABLATIONS)
    assert len(planned) == tuning + len(profiles.PAIRS) * per_pair
    assert [run.validation for run in planned[:tuning]] == [True] * tuning  # the screen comes first
    assert {run.pair for run in planned[:tuning] if run.method == "fbt"} == {"cnn_to_vit", "vit_to_cnn"}

    finish(teacher_dir(tmp_path, "cnn_teacher"), 0.7)
    finish(run_dir(tmp_path, "cnn_to_vit", "none", 0), 0.40)
    finish(run_dir(tmp_path, "cnn_to_vit", "fbt", 0), 0.46, assistant=0.65)
    finish(ablation_dir(tmp_path, "cnn_to_vit", "without F -> S"), 0.45, assistant=0.64)
    finish(tuning_dir(tmp_path, "cnn_to_vit", "kd", "T=8"), 0.41)
    results = collect_results("smoke", profile, opts, models())
    pair = results["pairs"]["cnn_to_vit"]
    assert pair["teacher_top1_range"] == [0.7, 0.7] and pair["methods"]["none"]["top1"] == {"mean": 0.40, "std": 0.0}
    assert pair["methods"]["fbt"]["assistant_top1"]["mean"] == 0.65 and pair["methods"]["fbt"]["runs"][0]["teacher_top1"] == 0.7
    assert results["ablation"]["cnn_to_vit"]["without F -> S"]["top1"] == 0.45
    assert results["tuning"]["cnn_to_vit"]["kd"]["T=8"]["options"] == {"kd_temperature": 8.0}
    assert "cnn_to_vit ofa seed 0" in results["missing"] and "teacher vit_teacher" in results["missing"]
    assert len(results["missing"]) == 1 + len(planned) - 4  # the ViT teacher, and all runs but four
    shutil.rmtree(teacher_dir(tmp_path, "cnn_teacher"))
    finish(teacher_dir(tmp_path, "cnn_teacher"), 0.75)  # retrained: the runs above were taught by 0.7
    retrained = collect_results("smoke", profile, opts, models())
    assert retrained["teachers"]["cnn_teacher"]["top1"] == 0.75 and retrained["pairs"]["cnn_to_vit"]["teacher_top1_range"] == [0.7, 0.7]

    # The run folders are not in git: a clone holds only results.json, and resumes from it.
    (tmp_path / "results.json").write_text(json.dumps(results))
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "results.json").write_text(json.dumps(results))
    left = pending_runs(profile, options(clone))
    assert len(left) == len(planned) - 4
    assert not {run.label for run in left} & {"cnn_to_vit none seed 0", "cnn_to_vit kd T=8 seed 0 (validation)"}
    again = collect_results("smoke", profile, options(clone), models())
    assert again["pairs"] == results["pairs"] and again["tuning"] == results["tuning"]
    assert again["machines"] == results["machines"] and len(results["machines"]) == 1  # one machine trained all

    # Runs kept from a record trained elsewhere: the table names both machines.
    here = results["machines"][0]
    results["machines"] = [here | {"cpu": "Elsewhere CPU", "cpu_count": 8}]
    (clone / "results.json").write_text(json.dumps(results))
    again = collect_results("smoke", profile, options(clone), models())
    assert [machine["cpu"] for machine in again["machines"]] == ["Elsewhere CPU", here["cpu"]]
    assert f"Trained on cpu (Elsewhere CPU, 8 cores) and cpu ({here['cpu']}, " in markdown_table(again)

    # A record of another schedule is not this benchmark's: nothing is taken from it.
    results["schedule"]["epochs"] = 99
    (clone / "results.json").write_text(json.dumps(results))
    assert len(pending_runs(profile, options(clone))) == len(planned)


def test_an_ablation_that_repeats_full_fbt_is_marked(tmp_path):
    """Switching off a part the pair's defaults already leave off trains full fbt again: the record and the
    table say so instead of showing a change of zero."""
    profile, opts = profiles.PROFILES["smoke"], options(tmp_path)
    default = {"fbt_infonce_weight": 0.3, "fbt_transfer_paths": ["teacher_student", "teacher_assistant"]}
    finish(teacher_dir(tmp_path, "vit_teacher"), 0.7)
    finish(run_dir(tmp_path, "vit_to_cnn", "fbt", 0), 0.46, assistant=0.5, method_config=default)
    finish(ablation_dir(tmp_path, "vit_to_cnn", "without F -> S"), 0.46, assistant=0.5, method_config=default)
    finish(ablation_dir(tmp_path, "vit_to_cnn", "without InfoNCE"), 0.48, assistant=0.5,
           method_config=default | {"fbt_infonce_weight": 0.0})
    results = collect_results("smoke", profile, opts, models())
    variants = results["ablation"]["vit_to_cnn"]
    assert variants["without F -> S"]["repeats_full"] is True and "repeats_full" not in variants["without InfoNCE"]
    row = next(line for line in ablation_table(results) if line.startswith("| vit_to_cnn |"))
    assert "48.00 (+2.00), F 50.00" in row and "= full fbt (off by default here)" in row


def test_a_record_taught_by_another_committed_teacher_keeps_only_its_untaught_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "teacher_dir", lambda name: tmp_path / "committed" / name)
    profile = dataclasses.replace(profiles.PROFILES["smoke"], committed_teachers={"cnn_teacher": "resnet"})
    teacher = tmp_path / "committed" / "resnet"
    finish(teacher, 0.7)
    for name in KEPT_FILES[:-2]:  # results.json is there; the other files only need to exist
        (teacher / name).write_bytes(b"first weights")
    (teacher / "README.md").write_text("card")
    finish(run_dir(tmp_path, "cnn_to_vit", "kd", 0), 0.45)
    finish(run_dir(tmp_path, "cnn_to_vit", "none", 0), 0.40)
    record = collect_results("smoke", profile, options(tmp_path), models())
    assert record["schedule"]["teachers"] == {"cnn_teacher": weights_digest(teacher)}
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "results.json").write_text(json.dumps(record))
    left = {run.label for run in pending_runs(profile, options(clone))}
    assert not left & {"cnn_to_vit kd seed 0", "cnn_to_vit none seed 0"}
    (teacher / "model.safetensors").write_bytes(b"retrained weights")
    left = {run.label for run in pending_runs(profile, options(clone))}
    assert "cnn_to_vit kd seed 0" in left and "cnn_to_vit none seed 0" not in left  # the student alone had no teacher
    kept = collect_results("smoke", profile, options(clone), models())["pairs"]["cnn_to_vit"]["methods"]
    assert list(kept) == ["none"] and kept["none"]["top1"]["mean"] == 0.40


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_validation_split_is_the_last_tenth_of_the_train_split(tmp_path):
    features = Features(img=Image(), label=ClassLabel(names=["a", "b"]), row=Value("int32"))
    rows = {"img": [{"bytes": png(i), "path": None} for i in range(30)], "label": [i % 2 for i in range(30)]}
    source = tmp_path / "cifar"
    source.mkdir()
    Dataset.from_dict(rows | {"row": list(range(30))}, features=features).to_parquet(str(source / "train.parquet"))
    Dataset.from_dict(rows | {"row": list(range(30))}, features=features).select(range(5)).to_parquet(
        str(source / "test.parquet")
    )
    target = validation_data(str(source), tmp_path / "out")
    assert sorted(path.name for path in target.iterdir()) == ["train.parquet", "validation.parquet"]
    split = load_image_dataset(str(target), eval_split="validation")
    assert split.train["row"] == list(range(27)) and split.eval["row"] == [27, 28, 29]
    assert split.id2label == {0: "a", 1: "b"}


def test_screen_table_marks_the_best_setting_per_pair():
    """A results.json written before the screen ran at several seeds (one run per setting) renders as it did."""

    def run(top1):
        return {"seed": 0, "top1": top1}

    results = {
        "profile": "quick",
        "schedule": {"seeds": [0, 1, 2]},
        "tuning": {
            "p1": {
                "kd": {"T=2": run(0.30), "T=4": run(0.32), "T=8": run(0.31)},
                "fbt": {"bridge upsamples": run(0.45) | {"assistant_top1": 0.6, "options": {"fbt_bridge_upsample": "true"}}},
            },
            "p2": {"kd": {"T=2": run(0.50), "T=4": run(0.40)}},
        },
    }
    lines = tuning_table(with_screen_rows(results))
    assert lines[0].startswith("Validation screen (seed 0; students trained") and lines[0].endswith("student top-1 (%).")
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| kd |")}
    assert rows["T=2: `--kd_temperature 2.0`"].endswith("| 30.00 | **50.00** | 40.00 |")
    assert rows["T=4 (default)"].endswith("| **32.00** | 40.00 | 36.00 |")
    assert rows["T=8: `--kd_temperature 8.0`"].endswith("| 31.00 | - | - |")  # one pair missing: no mean
    assert not any(line.startswith("| ofa |") and "**" in line for line in lines)
    fbt = [line for line in lines if line.startswith("| fbt |")]
    assert fbt[0].endswith("| **45.00**, F 60.00 | - | - |")  # F beside its student
    upgraded = results["tuning"]["p1"]["fbt"]["bridge upsamples"]
    assert upgraded["options"] == {"fbt_bridge_upsample": "true"} and "options" not in upgraded["runs"][0]


def test_screen_table_at_three_seeds_shows_mean_std_and_their_count():
    def row(*top1, assistant=()):
        runs = [{"seed": seed, "top1": value} for seed, value in enumerate(top1)]
        return seed_row([run | {"assistant_top1": f} for run, f in zip(runs, assistant)] if assistant else runs)

    results = {
        "profile": "quick",
        "schedule": {"seeds": [0, 1, 2]},
        "tuning": {
            "p1": {
                "kd": {"T=2": row(0.30, 0.32, 0.34), "T=4": row(0.40, 0.41, 0.45), "T=8": row(0.46)},
                "fbt": {"bridge upsamples": row(0.45, 0.47, 0.49, assistant=(0.60, 0.62, 0.64))},
            },
            "p2": {"kd": {"T=2": row(0.50, 0.52, 0.54), "T=4": row(0.44, 0.46, 0.48)}},
        },
    }
    lines = tuning_table(results)
    assert lines[0].startswith("Validation screen (seeds 0, 1, 2; ") and lines[0].endswith("mean ± std over the seeds trained.")
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| kd |")}
    # T=4 on p1: mean 0.42, sample std sqrt((0.02^2 + 0.01^2 + 0.03^2) / 2) = 0.02646. p1's best mean is T=8's
    # one run, shown without a count.
    assert rows["T=4 (default)"].endswith("| 42.00 ± 2.65 (3 seeds) | 46.00 ± 2.00 (3 seeds) | 44.00 |")
    assert rows["T=2: `--kd_temperature 2.0`"].endswith("| 32.00 ± 2.00 (3 seeds) | **52.00 ± 2.00** (3 seeds) | 42.00 |")
    assert rows["T=8: `--kd_temperature 8.0`"].endswith("| **46.00** | - | - |")
    fbt = [line for line in lines if line.startswith("| fbt |")]
    assert fbt[0].endswith("| **47.00 ± 2.00** (3 seeds), F 62.00 | - | - |")


def test_a_recorded_setting_the_profile_no_longer_screens_stays_a_row_with_its_recorded_flags(tmp_path):
    profile = profiles.PROFILES["smoke"]
    retired = seed_row([{"seed": 0, "top1": 0.38, "top5": 1.0, "train_seconds": 60.0}]) | {
        "options": {"own_teacher_suffix": True}  # an option since removed
    }
    record = {"schedule": profiles.schedule(profile), "machines": [{"cpu": "Elsewhere CPU", "gpu": None}], "teachers": {},
              "tuning": {"cnn_to_mlp": {"kd": {"T=16": retired}}}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    finish(tuning_dir(tmp_path, "cnn_to_mlp", "kd", "T=2"), 0.41)
    results = collect_results("smoke", profile, options(tmp_path), models())
    assert results["tuning"]["cnn_to_mlp"]["kd"]["T=16"] == retired
    rows = {line.split(" | ")[1]: line for line in tuning_table(results) if line.startswith("| kd |")}
    assert list(rows) == ["T=2: `--kd_temperature 2.0`", "T=4 (default)", "T=8: `--kd_temperature 8.0`",
                          "T=16: `--own_teacher_suffix true` (recorded; no longer screened)"]  # fmt: skip
    assert rows["T=16: `--own_teacher_suffix true` (recorded; no longer screened)"].endswith("| 38.00 | 38.00 |")


def test_a_folder_holding_only_the_validation_screen_is_reported_without_a_chart(tmp_path):
    finish(tuning_dir(tmp_path, "cnn_to_vit", "kd", "T=8"), 0.41)
    results = collect_results("smoke", profiles.PROFILES["smoke"], options(tmp_path), models())
    table = write_report(results, tmp_path, None)
    assert "| kd | T=8: `--kd_temperature 8.0` | **41.00** | 41.00 |" in table and "accuracy.png" not in table
    assert not (tmp_path / "accuracy.png").exists() and (tmp_path / "table.md").read_text() == table
    finish(teacher_dir(tmp_path, "cnn_teacher"), 0.7)
    finish(run_dir(tmp_path, "cnn_to_vit", "none", 0), 0.40)
    charted = write_report(collect_results("smoke", profiles.PROFILES["smoke"], options(tmp_path), models()), tmp_path, None)
    assert "![Top-1 per pair and method](accuracy.png)" in charted and (tmp_path / "accuracy.png").is_file()


def test_parts_of_the_benchmark_are_selected_by_flag(tmp_path):
    profile = profiles.PROFILES["smoke"]
    only = pending_runs(
        profile, options(tmp_path, "--parts", "ablation", "tuning", "--pairs", "cnn_to_mlp", "--methods", "kd",
                         "--ablations", "without F -> S")
    )
    assert [run.label for run in only] == [
        f"cnn_to_mlp kd {setting} seed 0 (validation)" for setting in profiles.TUNING["kd"]
    ] + ["cnn_to_mlp fbt without F -> S seed 0"]
    assert only[-1].method_config == {"fbt_transfer_paths": "teacher_student,teacher_assistant"}
    published = pending_runs(
        profile, options(tmp_path, "--parts", "tuning", "--pairs", "cnn_to_mlp", "--settings", "published recipe")
    )
    assert [run.label for run in published] == ["cnn_to_mlp ofa published recipe seed 0 (validation)"]


def test_screen_seeds_plan_a_folder_per_seed_beside_the_first_seeds(tmp_path):
    profile = profiles.PROFILES["smoke"]
    argv = ("--parts", "tuning", "--pairs", "cnn_to_mlp", "--methods", "kd", "--screen_seeds", "0", "1", "2")
    planned = pending_runs(profile, options(tmp_path, *argv))
    assert [run.label for run in planned] == [
        f"cnn_to_mlp kd {setting} seed {seed} (validation)" for seed in (0, 1, 2) for setting in ("T=2", "T=4", "T=8")
    ]  # seed by seed
    assert planned[0].directory == tmp_path / "tuning" / "cnn_to_mlp" / "kd" / "T=2"  # where the screens trained so far are
    assert planned[3].directory == tmp_path / "tuning" / "cnn_to_mlp" / "kd" / "T=2-seed1"
    assert planned[3].record == ("tuning", "cnn_to_mlp", "kd", "T=2", "runs", 1) and planned[3].seed == 1
    assert planned[3].method_config == {"kd_temperature": 2.0}
    chosen = pending_runs(profile, options(tmp_path, *argv, "--settings", "T=8"))
    assert [run.directory.name for run in chosen] == ["T=8", "T=8-seed1", "T=8-seed2"]
    assert [run.label for run in pending_runs(profile, options(tmp_path, *argv[:6]))] == [
        f"cnn_to_mlp kd {setting} seed 0 (validation)" for setting in ("T=2", "T=4", "T=8")
    ]  # without the flag: the profile's first seed, as before


def test_screen_seeds_collect_from_folders_and_a_record_of_one_run_per_setting(tmp_path):
    profile = profiles.PROFILES["smoke"]
    argv = ("--parts", "tuning", "--pairs", "cnn_to_mlp", "--methods", "kd", "--screen_seeds", "0", "1", "2")
    old_run = {"seed": 0, "dir": "x", "top1": 0.41, "top5": 1.0, "train_seconds": 60.0, "options": {"kd_temperature": 2.0}}
    old_record = {  # as results.json kept the screen before --screen_seeds: one run per setting
        "schedule": profiles.schedule(profile),
        "machines": [{"cpu": "Elsewhere CPU", "gpu": None}],
        "teachers": {},
        "tuning": {"cnn_to_mlp": {"kd": {"T=2": old_run}}},
    }
    (tmp_path / "results.json").write_text(json.dumps(old_record))
    finish(tuning_dir(tmp_path, "cnn_to_mlp", "kd", "T=2", 1), 0.43)
    finish(tuning_dir(tmp_path, "cnn_to_mlp", "kd", "T=2", 2), 0.45)
    finish(tuning_dir(tmp_path, "cnn_to_mlp", "kd", "T=4", 1), 0.50)
    left = {run.label for run in pending_runs(profile, options(tmp_path, *argv))}
    assert left == {
        f"cnn_to_mlp kd {setting} seed {seed} (validation)" for setting, seed in
        [("T=4", 0), ("T=4", 2), ("T=8", 0), ("T=8", 1), ("T=8", 2)]
    }  # fmt: skip
    results = collect_results("smoke", profile, options(tmp_path, *argv), models())
    t2 = results["tuning"]["cnn_to_mlp"]["kd"]["T=2"]
    assert [run["seed"] for run in t2["runs"]] == [0, 1, 2] and t2["options"] == {"kd_temperature": 2.0}
    assert t2["top1"]["mean"] == pytest.approx(0.43) and t2["top1"]["std"] == pytest.approx(0.02)
    assert t2["runs"][1]["dir"].endswith("T=2-seed1") and "options" not in t2["runs"][0]
    assert results["tuning"]["cnn_to_mlp"]["kd"]["T=4"]["runs"][0]["seed"] == 1
    assert "cnn_to_mlp kd T=8 seed 2 (validation)" in results["missing"]

    # A clone resumes from the new record alone; a collect without the flag keeps the other seeds' runs.
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "results.json").write_text(json.dumps(results))
    assert {run.label for run in pending_runs(profile, options(clone, *argv))} == left
    again = collect_results("smoke", profile, options(clone), models())
    assert again["tuning"] == results["tuning"]
    assert "cnn_to_mlp kd T=8 seed 0 (validation)" in again["missing"]
    assert not any("seed 1 (validation)" in label for label in again["missing"])  # only the seeds asked for


def test_the_headline_profile_pairs_a_committed_vit_teacher_with_cnn_students_whose_stage3_is_its_grid(tmp_path):
    profile = profiles.PROFILES["headline"]
    assert profile.teacher_roles() == ["vit_teacher"] and profile.committed_teachers == {"vit_teacher": "vit-p16-64"}
    labels = {i: str(i) for i in range(10)}
    teacher_recipe = profile.models["vit_teacher"]
    teacher = staged_view(ViTForImageClassification(teacher_recipe.config), teacher_recipe.image_size)
    for _, student_role in profile.pairs.values():
        recipe = profile.models[student_role]
        student = staged_view(load_classifier(str(recipe.save(tmp_path / student_role)), labels), recipe.image_size)
        assert student.family == "cnn" and student.stage_infos[2].grid == teacher.stage_infos[3].grid == (4, 4)
    planned = planned_runs(profile, tmp_path, list(profile.pairs), profile.seeds, benchmark_methods(), BENCHMARK_PARTS)
    assert {run.part for run in planned} == {"tuning", "table"}  # no ablation yet
    assert len([run for run in planned if run.part == "table"]) == 2 * len(benchmark_methods()) * 3
    screened = {(run.method, run.variant) for run in planned if run.part == "tuning"}
    assert ("fbt", "the paper's settings") in screened and ("ofa", "default") in screened
    described = profiles.write_model_dirs(profile, tmp_path / "models")  # the committed teacher with its own labels
    assert described["vit_teacher"]["spec"].endswith("teachers/vit-p16-64") and described["vit_teacher"]["family"] == "attention"
    unbuilt = dataclasses.replace(profile, committed_teachers={"vit_teacher": "not-built"})
    with pytest.raises(SystemExit, match="committed teacher not-built, not built yet: python -m benchmarks.accuracy.teachers not-built"):
        profiles.committed_teacher(unbuilt, "vit_teacher")


def test_the_recipe_variant_trains_every_student_run_with_the_recipes_flags(tmp_path, monkeypatch):
    """``--recipe``: its own output folder, the README left alone, a schedule record of its own, and each student run's
    distill call given RandAugment, Mixup/CutMix and an EMA whose horizon is a share of the run."""
    opts = parse_args(["--profile", "headline", "--recipe", "--pairs", "vit_to_resnet", "--methods", "kd",
                       "--parts", "table", "--seeds", "0", "--data", "cifar10-hub-id"])  # fmt: skip
    assert opts.output_dir.name == "headline-recipe" and opts.readme is None
    plain = profiles.PROFILES["headline"]
    recipe = profiles.with_recipe(plain)
    assert "recipe" not in profiles.schedule(plain) and profiles.schedule(recipe)["recipe"] == recipe.recipe
    decay = recipe.recipe["training"]["model_ema_decay"]
    assert 1 / (1 - decay) == pytest.approx(profiles.EMA_HORIZON_SHARE * recipe.total_steps, rel=0.01)
    calls = []

    def distill(models, data, training_args):
        calls.append((data, training_args))
        return {"metrics": {"student": {"top1": 0.5}}}

    monkeypatch.setattr("benchmarks.accuracy.runs.distill", distill)
    opts.output_dir = tmp_path / "out"
    run_benchmark(recipe, opts, {role: {"spec": role} for role in recipe.models})
    [(data, training_args)] = calls
    assert (data.auto_augment, data.mixup_alpha, data.cutmix_alpha) == ("rand-m9-mstd0.5-inc1", 0.8, 1.0)
    assert training_args.model_ema_decay == decay and training_args.method == "kd"


def test_a_run_stopped_by_a_signal_continues_from_its_newest_complete_checkpoint(tmp_path, monkeypatch):
    """A preempted run leaves a complete checkpoint; the benchmark run again passes it as resume_from_checkpoint,
    passing over a newer one whose write did not finish, and starts the other runs afresh."""
    opts = parse_args(["--profile", "headline", "--pairs", "vit_to_resnet", "--methods", "none", "kd",
                       "--parts", "table", "--seeds", "0", "--data", "cifar10-hub-id", "--output_dir", str(tmp_path)])  # fmt: skip
    profile = profiles.PROFILES["headline"]
    stopped = run_dir(tmp_path, "vit_to_resnet", "kd", 0)
    (stopped / "checkpoint-7").mkdir(parents=True)
    (stopped / "checkpoint-7" / "checkpoint_complete").touch()
    (stopped / "checkpoint-9").mkdir()  # killed while writing
    resumed = {}

    def distill(models, data, training_args):
        resumed[training_args.method] = training_args.resume_from_checkpoint
        return {"metrics": {"student": {"top1": 0.5}}}

    monkeypatch.setattr("benchmarks.accuracy.runs.distill", distill)
    run_benchmark(profile, opts, {role: {"spec": role} for role in profile.models})
    assert resumed == {"none": None, "kd": str(stopped / "checkpoint-7")}


def test_the_recipe_report_compares_each_method_with_the_same_runs_without_it(tmp_path):
    """``--recipe --report_only`` reads ``<profile>/results.json`` beside ``<profile>-recipe/`` and writes, into its own
    README region, each method's top-1 without and with the recipe, the EMA's, the better of the two minus the
    run without the recipe (here: EMA 45.00 - 41.00), and kd's gain over the student alone either way."""
    recipe_profile = profiles.with_recipe(profiles.PROFILES["quick"])

    def record(directory: Path, profile, top1: list[float], shift: float, ema: list[float] | None = None) -> None:
        """kd's runs at ``top1``, the student alone's ``shift`` under them."""
        runs = [{"seed": seed, "top1": value, "top5": 1.0, "train_seconds": 60.0} for seed, value in enumerate(top1)]
        for run, value in zip(runs, ema or []):
            run["student_ema_top1"] = value
        pair = {"teacher": "cnn_teacher", "student": "vit_student", "teacher_top1_range": [0.65, 0.65],
                "methods": {"kd": seed_row(runs), "none": seed_row([dict(run, top1=run["top1"] - shift) for run in runs])}}  # fmt: skip
        directory.mkdir()
        results = {"profile": "quick", "schedule": profiles.schedule(profile), "pairs": {"cnn_to_vit": pair}}
        (directory / "results.json").write_text(json.dumps(results))

    record(tmp_path / "quick", profiles.PROFILES["quick"], [0.40, 0.42], shift=0.02)
    record(tmp_path / "quick-recipe", recipe_profile, [0.43, 0.45], shift=0.01, ema=[0.44, 0.46])
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n")
    main(["--profile", "quick", "--recipe", "--report_only", "--output_dir", str(tmp_path / "quick-recipe"),
          "--readme", str(readme)])  # fmt: skip
    region = readme.read_text().split("<!-- benchmark-accuracy-quick-recipe:start -->")[1]
    row = next(line for line in region.splitlines() if line.startswith("| cnn_to_vit | 65.00 / 65.00 | kd |"))
    assert row == "| cnn_to_vit | 65.00 / 65.00 | kd | 41.00 ± 1.41 (2/3 seeds) | 44.00 ± 1.41 (2/3 seeds) | 45.00 ± 1.41 (2/3 seeds) | +4.00 | +2.00 / +1.00 |"
    assert "--auto_augment rand-m9-mstd0.5-inc1" in region and "--model_ema_decay 0.9494" in region


def test_a_profile_with_a_committed_teacher_names_it_and_its_own_command_in_the_table():
    results = {"profile": "headline", "schedule": profiles.schedule(profiles.PROFILES["headline"]), "teachers": {},
               "pairs": {}, "machines": [{"device": "cpu", "cpu": "EPYC", "cpu_count": 2, "gpu": None}]}  # fmt: skip
    header = markdown_table(results).splitlines()[0]
    assert "the committed teacher `benchmarks/accuracy/teachers/vit-p16-64`" in header and "teachers 0 epochs" not in header
    assert "Reproduce: `.venv/bin/python -m benchmarks.accuracy --profile headline`" in header


def test_a_method_whose_spread_exceeds_the_threshold_gets_the_more_seeds(tmp_path, monkeypatch):
    """``Profile.more_seeds``: planned, trained, reported missing and collected only for a pair's method whose
    top-1 std over the profile's seeds exceeds ``more_seeds_above_std``, and only once those seeds are in."""
    profile = dataclasses.replace(profiles.PROFILES["smoke"], seeds=(0, 1, 2), more_seeds=(3, 4), more_seeds_above_std=0.01)
    monkeypatch.setitem(profiles.PROFILES, "smoke", profile)
    for method, values in {"none": (0.40, 0.40, 0.41), "kd": (0.40, 0.45, 0.50), "fbt": (0.30, 0.50)}.items():
        for seed, top1 in enumerate(values):
            finish(run_dir(tmp_path, "cnn_to_vit", method, seed), top1, assistant=0.6 if method == "fbt" else None)
    opts = options(tmp_path, "--parts", "table", "--pairs", "cnn_to_vit")
    planned = {run.label for run in pending_runs(profile, opts)}
    assert {"cnn_to_vit kd seed 3", "cnn_to_vit kd seed 4", "cnn_to_vit fbt seed 2"} <= planned
    assert not {"cnn_to_vit none seed 3", "cnn_to_vit fbt seed 3"} & planned  # steady; not all seeds in yet
    missing = collect_results("smoke", profile, options(tmp_path), models())["missing"]
    assert "cnn_to_vit kd seed 4" in missing and "cnn_to_vit none seed 3" not in missing

    trained = []

    def distill(models, data, training_args):  # fbt's seed 2 lands far from its others: fbt then needs more seeds
        trained.append((training_args.method, training_args.seed))
        fbt = training_args.method == "fbt"
        finish(Path(training_args.output_dir), 0.70 if fbt else 0.45, assistant=0.6 if fbt else None)
        return json.loads((Path(training_args.output_dir) / "results.json").read_text())

    monkeypatch.setattr("benchmarks.accuracy.runs.distill", distill)
    finish(teacher_dir(tmp_path, "cnn_teacher"), 0.7)
    run_benchmark(profile, parse_args(["--profile", "smoke", "--output_dir", str(tmp_path), "--parts", "table",
                                       "--pairs", "cnn_to_vit", "--methods", "none", "kd", "fbt"]),  # fmt: skip
                  {role: {"spec": role} for role in profile.models})
    assert trained == [("fbt", 2), ("kd", 3), ("kd", 4), ("fbt", 3), ("fbt", 4)]
    results = collect_results("smoke", profile, options(tmp_path), models())
    kd = results["pairs"]["cnn_to_vit"]["methods"]["kd"]
    assert [run["seed"] for run in kd["runs"]] == [0, 1, 2, 3, 4] and kd["top1"]["mean"] == pytest.approx(0.45)
    table = markdown_table(results)
    assert "3 seeds (mean ± std), 5 where their std exceeds 1 point;" in table
    assert "45.00 ± 3.54 (5 seeds)" in table and "40.33 ± 0.58 |" in table


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_profile_help_describes_every_profile(name, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    description = profiles.PROFILES[name].description
    assert description, f"profile {name!r} has no description for --profile's help"
    assert f"{name}: {description}" in help_text
