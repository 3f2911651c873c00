"""The committed-teacher command: trains alone through scripts/distill.py, resumes, keeps only the small files."""

from __future__ import annotations

import dataclasses
import json

import pytest
from transformers import AutoModelForImageClassification, ViTConfig

from benchmarks.accuracy.teachers.build import KEPT_FILES, TEACHERS, build_teacher, is_built
from benchmarks.common import REPO


@pytest.mark.slow  # two short training runs in child processes
def test_a_teacher_is_trained_resumed_and_kept_as_small_files(tmp_path, capfd):
    tiny = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32)
    committed = TEACHERS["vit-p16-64"]
    model = dataclasses.replace(committed.model, config=tiny, image_size=32)
    recipe = dataclasses.replace(committed, model=model, train_rows=64, epochs=1, batch_size=32)
    data, work_dir, target = str(REPO / "demo_data" / "cifar10"), tmp_path / "work", tmp_path / "teacher"
    flags = ["--use_cpu", "--max_eval_samples", "32", "--disable_tqdm", "true"]
    build_teacher(recipe, data, work_dir, target, flags)
    assert is_built(target) and sorted(p.name for p in target.iterdir()) == sorted([*KEPT_FILES, "command.txt"])
    assert (work_dir / "checkpoint-2").is_dir()  # 64 rows, batch 32: one epoch is 2 steps
    # The same command with a longer schedule resumes from the last complete checkpoint.
    build_teacher(dataclasses.replace(recipe, epochs=2), data, work_dir, target, flags)
    assert "--resume_from_checkpoint last" in capfd.readouterr().err
    state = json.loads((work_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and not (work_dir / "checkpoint-2").exists()  # save_total_limit 1
    results = json.loads((target / "results.json").read_text())
    assert results["method"] == "none" and 0 <= results["metrics"]["student"]["top1"] <= 1
    model = AutoModelForImageClassification.from_pretrained(target)
    assert model.config.hidden_size == 16 and model.config.id2label[0] == "airplane"
    assert (target / "command.txt").read_text().split()[3:] == ["teacher", *flags]
