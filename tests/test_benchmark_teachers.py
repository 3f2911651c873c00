"""The committed-teacher command: trains alone through scripts/distill.py, resumes, keeps only the small files."""

from __future__ import annotations

import dataclasses
import json

import pytest
from transformers import AutoModelForImageClassification, ViTConfig

from benchmarks.accuracy.teachers.build import KEPT_FILES, TEACHERS, Stage, build_teacher, is_built
from benchmarks.common import REPO, Schedule


@pytest.mark.slow  # three short training runs in child processes
def test_a_teacher_is_trained_in_stages_resumed_and_kept_as_small_files(tmp_path, capfd):
    tiny = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32)
    committed = TEACHERS["vit-p16-64"]
    model = dataclasses.replace(committed.model, config=tiny, image_size=32)
    first, restart = Stage(1, Schedule(learning_rate=1e-3)), Stage(1, Schedule(learning_rate=5e-4, warmup=0.0))
    recipe = dataclasses.replace(committed, model=model, train_rows=64, stages=(first, restart), batch_size=32)
    data, work_dir, target = str(REPO / "demo_data" / "cifar10"), tmp_path / "work", tmp_path / "teacher"
    flags = ["--use_cpu", "--max_eval_samples", "32", "--disable_tqdm", "true"]
    build_teacher(recipe, data, work_dir, target, flags)
    assert is_built(target) and sorted(p.name for p in target.iterdir()) == sorted([*KEPT_FILES, "command.txt"])
    assert (work_dir / "stage-0" / "checkpoint-2").is_dir()  # 64 rows, batch 32: one epoch is 2 steps
    stage_results = [json.loads((work_dir / f"stage-{i}" / "results.json").read_text()) for i in (0, 1)]
    # The second stage starts from the weights the first one saved, and the teacher is the second stage's.
    assert stage_results[1]["student"]["name_or_path"] == str(work_dir / "stage-0")
    assert json.loads((target / "results.json").read_text()) == stage_results[1]
    # The same command with a longer last stage skips the finished first one and resumes the second.
    longer = dataclasses.replace(recipe, stages=(first, dataclasses.replace(restart, epochs=2)))
    build_teacher(longer, data, work_dir, target, flags)
    commands = [line for line in capfd.readouterr().err.splitlines() if "scripts/distill.py" in line]
    assert len(commands) == 3 and "stage-1 " in commands[2] and commands[2].endswith("--resume_from_checkpoint last")
    state = json.loads((work_dir / "stage-1" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and not (work_dir / "stage-1" / "checkpoint-2").exists()  # save_total_limit 1
    results = json.loads((target / "results.json").read_text())
    assert results["method"] == "none" and 0 <= results["metrics"]["student"]["top1"] <= 1
    model = AutoModelForImageClassification.from_pretrained(target)
    assert model.config.hidden_size == 16 and model.config.id2label[0] == "airplane"
    assert (target / "command.txt").read_text().split()[3:] == ["teacher", *flags]
