"""hf-cakd's command line: the one-flag call, config files, --help, sub-commands, resolutions of models built from scratch."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoModelForImageClassification

from hf_cakd.cli import main as hf_cakd_main
from hf_cakd.cli import distill_main
from hf_cakd.errors import UsageError
from test_distill_script import distill_args, workspace  # noqa: F401  (workspace: a fixture)


def without(args: list[str], flag: str) -> list[str]:
    at = args.index(flag)
    return args[:at] + args[at + 2 :]


def test_teacher_and_dataset_alone_pick_a_student_of_another_family(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    results = distill_main(without(distill_args(workspace, "kd", output_dir), "--student"))
    assert results["families"] == {"teacher": "cnn", "student": "attention"}  # a CNN teacher gets a ViT
    assert results["student"]["name_or_path"] == "hf_cakd:default-deit-tiny"
    assert results["input_resolution"]["student"] == {"size": [32, 32], "source": "the data (built from scratch)"}
    student = AutoModelForImageClassification.from_pretrained(output_dir)
    assert student.config.image_size == 32 and student.config.num_hidden_layers == 12
    assert "hf_cakd:default-deit-tiny" in (output_dir / "README.md").read_text(encoding="utf-8")


def test_a_timm_student_from_scratch_runs_at_the_datas_resolution(workspace, tmp_path):  # noqa: F811
    args = distill_args(workspace, "kd", tmp_path / "out", student="timm:resnet18")
    args += ["--student_model_args", json.dumps({"layers": [1, 1, 1, 1], "channels": [8, 16, 24, 32]})]
    results = distill_main(args)
    # Not the 224 px of resnet18's timm config: 50x the compute for 32 px images.
    assert results["input_resolution"]["student"] == {"size": [32, 32], "source": "the data (built from scratch)"}


def test_a_timm_teacher_from_scratch_is_built_for_the_datas_resolution(workspace, tmp_path):  # noqa: F811
    args = distill_args(workspace, "kd", tmp_path / "out")
    args[args.index("--teacher") + 1] = "timm:vit_tiny_patch16_224"  # a fixed-size model: 224 px unless told
    args += ["--teacher_model_args", json.dumps({"patch_size": 4, "embed_dim": 32, "depth": 4, "num_heads": 2})]
    results = distill_main(args)
    assert results["input_resolution"]["teacher"] == {"size": [32, 32], "source": "the data (built from scratch)"}


def test_a_timm_fixed_size_student_is_built_for_its_image_size_flag(workspace, tmp_path):  # noqa: F811
    args = distill_args(workspace, "kd", tmp_path / "out", "--student_image_size", "16", student="timm:vit_tiny_patch16_224")
    args += ["--student_model_args", json.dumps({"patch_size": 4, "embed_dim": 32, "depth": 4, "num_heads": 2})]
    results = distill_main(args)
    assert results["input_resolution"]["student"] == {"size": [16, 16], "source": "--student_image_size"}
    assert AutoModelForImageClassification.from_pretrained(tmp_path / "out").timm_model.patch_embed.img_size == (16, 16)


def test_timm_model_args_the_architecture_already_sets_are_a_usage_error(workspace, tmp_path):  # noqa: F811
    args = distill_args(workspace, "kd", tmp_path / "out", student="timm:mixer_s16_224")
    args += ["--student_model_args", json.dumps({"num_blocks": 1})]  # mixer_s16_224 sets num_blocks itself
    with pytest.raises(UsageError, match=r"^--student_model_args \{.*\} cannot build timm:mixer_s16_224: .*num_blocks"):
        distill_main(args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_is_the_only_argument(workspace, tmp_path, suffix):  # noqa: F811
    flags = distill_args(workspace, "fbt", tmp_path / "out") + ["--infonce_weight", "0.5"]
    keys = {}
    for flag, value in zip(flags, flags[1:] + [None]):
        if flag.startswith("--"):
            keys[flag[2:]] = True if value is None or value.startswith("--") else value
    for number in ("max_steps", "per_device_train_batch_size", "per_device_eval_batch_size", "logging_steps", "seed", "projector_dim"):
        keys[number] = int(keys[number])
    keys["infonce_weight"] = 0.5
    config = tmp_path / f"run{suffix}"
    config.write_text(yaml.safe_dump(keys) if suffix == ".yaml" else json.dumps(keys))
    results = distill_main([str(config)])
    assert results["method_config"]["infonce_weight"] == 0.5 and results["method_config"]["projector_dim"] == 16
    with pytest.raises(UsageError, match=f"No config file {tmp_path / 'missing'}{suffix}"):
        distill_main([str(tmp_path / f"missing{suffix}")])


def test_help_lists_hf_cakds_flags_and_help_all_every_training_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        distill_main(["--help"])
    short = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--infonce_weight" in short and "--kd_temperature" in short and "--teacher_label_mapping" in short
    assert "--adam_beta1" not in short and "--help_all" in short
    with pytest.raises(SystemExit):
        distill_main(["--help_all"])
    assert "--adam_beta1" in capsys.readouterr().out


def test_hf_cakd_names_its_commands_and_push_refuses_a_folder_without_a_student(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["train"])
    assert exit_info.value.code == 2 and "{distill,push}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["push", str(tmp_path), "--repo_id", "user/repo"])
    assert exit_info.value.code == 3 and "holds no saved student" in capsys.readouterr().err
