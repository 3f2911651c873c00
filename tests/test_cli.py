"""hf-cakd's command line: the one-flag call, config files, --help, sub-commands, resolutions of models built from scratch."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
import yaml
from transformers import AutoModelForImageClassification

from hf_cakd.cli import main as hf_cakd_main
from hf_cakd.cli import distill_main, parse_distill_args
from hf_cakd.errors import UsageError
from hf_cakd.run.pipeline import _teacher_near_chance, distill
from hf_cakd.methods import METHODS, method_class, method_config
from test_distill_script import distill_args, workspace  # noqa: F401  (workspace: a fixture)


ROOT = Path(__file__).resolve().parents[1]


def without(args: list[str], flag: str) -> list[str]:
    at = args.index(flag)
    return args[:at] + args[at + 2 :]


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    at = args.index(flag)
    return args[: at + 1] + [value] + args[at + 2 :]


def distill_leaving_its_arguments_unchanged(argv: list[str]) -> dict:
    """``distill`` on parsed flags; it plans the run without writing into the argument objects it was given."""
    arguments = parse_distill_args(argv)
    before = [copy.deepcopy({f.name: getattr(a, f.name) for f in dataclasses.fields(a)}) for a in arguments]
    run_logger = logging.getLogger("hf_cakd")
    level = run_logger.level
    try:
        results = distill(*arguments)
    finally:
        run_logger.setLevel(level)  # distill sets the run's log level on hf_cakd's loggers, as a command would
    assert [{f.name: getattr(a, f.name) for f in dataclasses.fields(a)} for a in arguments] == before
    return results


def test_teacher_and_dataset_alone_pick_a_student_of_another_family(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    results = distill_leaving_its_arguments_unchanged(without(distill_args(workspace, "kd", output_dir), "--student"))
    assert results["plan"]["student"]["spec"] == "hf_cakd:default-deit-tiny"
    assert results["plan"]["student"]["default_student_size"] == 32
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


@pytest.mark.parametrize(
    "teacher, missing",
    [
        ("resnet-teacher-config", "holds config.json but no weights file (model.safetensors or "),
        ("resnet-teacher-config/config.json", "is a config file (model.safetensors or "),
        ("timm:resnet18", "builds timm's resnet18 from scratch (timm:<name> loads no weights; timm's trained weights "
                          "are Hub ids, timm/resnet18.<tag>"),
    ],
)  # fmt: skip
def test_a_teacher_without_trained_weights_is_refused_naming_what_is_missing(
    workspace, tmp_path, capsys, teacher, missing  # noqa: F811
):
    spec = teacher if teacher.startswith("timm:") else str(ROOT / "demo_data" / "models" / teacher)
    args = with_flag(distill_args(workspace, "kd", tmp_path / "out"), "--teacher", spec)
    code, err = run_hf_cakd(["distill", *args], capsys)
    assert code == 3 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --teacher {spec!r}: {spec} {missing}")
    assert "so the teacher would be untrained (random weights) and teach noise" in err
    assert not (tmp_path / "out").exists()


def test_a_teacher_near_chance_is_warned_of_by_the_main_process_only(caplog):
    plan = SimpleNamespace(data=SimpleNamespace(num_labels=10), eval_split="test", teacher=SimpleNamespace(spec="t"))
    with caplog.at_level(logging.WARNING, logger="hf_cakd"):
        assert _teacher_near_chance(0.12, plan, warn=False) and not caplog.records  # another process: no repeat
        assert _teacher_near_chance(0.12, plan) and "near chance (10.00% for 10 classes)" in caplog.text
        assert not _teacher_near_chance(0.16, plan)  # over 1.5x chance


def test_a_teacher_near_chance_is_warned_of_in_the_log_results_and_card(workspace, tmp_path, caplog):  # noqa: F811
    teacher = AutoModelForImageClassification.from_pretrained(workspace["teacher"])
    classifier = teacher.classifier[-1]
    with torch.no_grad():  # it always answers "ship": 1 of the 16 eval rows
        classifier.weight.zero_()
        classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(8), 10).float())
    teacher.save_pretrained(tmp_path / "ship-teacher")
    shutil.copy(workspace["teacher"] / "preprocessor_config.json", tmp_path / "ship-teacher")
    args = with_flag(distill_args(workspace, "kd", tmp_path / "out"), "--teacher", str(tmp_path / "ship-teacher"))
    with caplog.at_level(logging.WARNING, logger="hf_cakd"):
        results = distill_main(args)
    assert results["metrics"]["teacher"]["top1"] == 1 / 16 and results["teacher_near_chance"] is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "near chance" in r.getMessage()]
    assert warnings == [
        "The teacher's top-1 on the test split is 6.25%, near chance (10.00% for 10 classes): it has little to teach. "
        f"Check that --teacher {tmp_path / 'ship-teacher'} was trained on these classes (--teacher_label_mapping maps its "
        "labels to the dataset's), and that its images are preprocessed as in its training."
    ]
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "- **The teacher scored near chance** on these evaluation images: top-1 6.25% against 10.00% for 10 classes." in card


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


@pytest.mark.parametrize("model_args", [{"dims": [8, 16, 24], "depths": [1, 1, 1]}, {"stem_type": "nope"}])
def test_timm_model_args_of_values_the_architecture_cannot_build_are_a_usage_error(workspace, tmp_path, model_args):  # noqa: F811
    # timm checks values with asserts and indexing, not with a TypeError as for an unknown name.
    args = distill_args(workspace, "kd", tmp_path / "out", student="timm:convnext_atto")
    args += ["--student_model_args", json.dumps(model_args)]
    with pytest.raises(UsageError, match=r"^--student_model_args \{.*\} cannot build timm:convnext_atto: "):
        distill_main(args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_is_the_only_argument(workspace, tmp_path, suffix):  # noqa: F811
    flags = distill_args(workspace, "fbt", tmp_path / "out") + ["--fbt_logit_weight", "0.5"]
    keys = {}
    for flag, value in zip(flags, flags[1:] + [None]):
        if flag.startswith("--"):
            keys[flag[2:]] = True if value is None or value.startswith("--") else value
    for number in ("max_steps", "per_device_train_batch_size", "per_device_eval_batch_size", "logging_steps", "seed", "fbt_projector_dim"):
        keys[number] = int(keys[number])
    keys["fbt_logit_weight"] = 0.5
    config = tmp_path / f"run{suffix}"
    config.write_text(yaml.safe_dump(keys) if suffix == ".yaml" else json.dumps(keys))
    results = distill_main([str(config)])
    assert results["method_config"]["fbt_logit_weight"] == 0.5 and results["method_config"]["fbt_projector_dim"] == 16
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")  # the options set, not every option
    auto = "(`auto`: follows the pair)"  # a CNN teacher, a ViT student: RSD's loss on the paper's paths
    assert (
        f"- fbt_logit_weight: `0.5`\n- fbt_projector_dim: `16`\n- fbt_feature_loss: `rsd` {auto}\n"
        f"- fbt_bridge_type: `attention` {auto}\n- fbt_bridge_upsample: `False` {auto}\n"
        f"- fbt_transfer_paths: `teacher_student,teacher_assistant,assistant_student` {auto}\n"
        f"- fbt_deep_supervision: `''` {auto}\n- fbt_bridge_downsample: `1` {auto}\n- other options: `fbt`'s defaults"
    ) in card
    with pytest.raises(UsageError, match=f"No config file {tmp_path / 'missing'}{suffix}"):
        distill_main([str(tmp_path / f"missing{suffix}")])


def test_help_lists_hf_cakds_flags_and_help_all_every_training_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        distill_main(["--help"])
    short = capsys.readouterr().out
    assert exit_info.value.code == 0
    # The default method, auto, is known once the student is: its options are --method X --help's.
    assert "--teacher_label_mapping" in short and "--fbt_infonce_weight" not in short and "(default method: auto)" in short
    assert "--adam_beta1" not in short and "--help_all" in short
    with pytest.raises(SystemExit):
        distill_main(["--method", "fbt", "--help"])
    fbt_help = capsys.readouterr().out
    assert "--fbt_infonce_weight" in fbt_help and "--kd_temperature" in fbt_help
    with pytest.raises(SystemExit):
        distill_main(["--help_all"])
    assert "--adam_beta1" in capsys.readouterr().out


def test_hf_cakd_names_its_commands_and_push_refuses_a_folder_without_a_student(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    assert exit_info.value.code == 0 and lines[:2] == ["usage: hf-cakd <command> [flags]", ""]
    assert lines[2:5] == [
        "commands:",
        "  distill  Distil a teacher into a student on an image-classification dataset.",
        "  push     Push a folder hf-cakd distill wrote to the Hub (the student at the top, its card last).",
    ]
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["train"])
    assert exit_info.value.code == 2 and capsys.readouterr().err == (
        "error: Unknown command 'train'. Pass one of: distill, push (hf-cakd --help says what each does).\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["push", str(tmp_path), "--repo", "user/repo"])  # --repo_id, abbreviated
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["push", str(tmp_path), "--repo_id", "user/repo"])
    assert exit_info.value.code == 3 and "holds no saved student" in capsys.readouterr().err


# ---- method options: per-method --help, typed values, refusals, config files (no training) ----


def help_sections(capsys, *argv, help_flag="--help") -> dict[str, str]:
    """``hf-cakd distill <argv> --help`` (or ``--help_all``) as {section title: its text}."""
    with pytest.raises(SystemExit) as exit_info:
        distill_main([*argv, help_flag])
    assert exit_info.value.code == 0
    parts = re.split(r"^(\S.*):$", capsys.readouterr().out, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def flags_in(text: str) -> set[str]:
    return set(re.findall(r"^  --(\w+)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_short_help_lists_the_common_flags_and_the_methods_own_options(method, capsys):
    config_class = method_class(method).config_class
    sections = help_sections(capsys, "--method", method)
    own = {name for name in config_class.option_names() if name.startswith(f"{method}_")}
    assert flags_in(sections.get(f"--method {method} options", "")) == own - set(config_class.experimental_option_names())
    shown = flags_in("".join(sections.values()))
    assert len(shown) <= 40 and {"teacher", "dataset", "output_dir", "method", "resume_from_checkpoint"} <= shown
    assert not {"auto_augment", "gradient_accumulation_steps", "ce_weight"} & shown  # behind --help_all


@pytest.mark.parametrize("method", sorted(METHODS))
def test_help_all_lists_every_option_of_the_method_with_its_default(method, capsys):
    sections = help_sections(capsys, "--method", method, help_flag="--help_all")
    config_class = method_class(method).config_class
    own = sections[f"--method {method} options"]
    experimental_title = f"--method {method}: experimental options (beyond the paper, off by default; docs/method.md)"
    experimental = sections.get(experimental_title, "")
    assert flags_in(experimental) == set(config_class.experimental_option_names())
    assert flags_in(own) | flags_in(experimental) == set(config_class.option_names())
    others = {o for cls in METHODS.values() for o in cls.config_class.option_names()} - set(config_class.option_names())
    assert not others & flags_in("".join(sections.values()))
    for option in dataclasses.fields(config_class):  # the default is the method's, not the flag's None
        shown = ",".join(map(str, option.default)) or "none" if isinstance(option.default, tuple) else option.default
        assert f"(default: {shown})" in " ".join((own + experimental).split()), option.name


def test_each_method_speaks_of_its_own_options_in_its_help(capsys):
    kd = " ".join(help_sections(capsys, "--method", "kd")["--method kd options"].split())
    assert "--kd_weight KD_WEIGHT, --kd-weight KD_WEIGHT Weight of the KD term. (default: 1.0)" in kd
    ofa = " ".join(help_sections(capsys, "--method", "ofa")["--method ofa options"].split())
    assert "Width of each stage branch" in ofa and "InfoNCE" not in ofa
    default = help_sections(capsys)  # no --method: auto, whose method the student decides, so no method's options
    assert not [title for title in default if title.startswith("--method")]


def test_method_flags_parse_into_typed_options(tmp_path):
    base = ["--output_dir", str(tmp_path), "--use_cpu"]
    _, _, args = parse_distill_args(
        ["--method", "ofa", *base, "--ofa_stages", "1,2,3,4", "--ofa_branch_weight", "0.1", "--ofa_final_logits", "false"]
    )
    assert {k: args.method_config[k] for k in ("ofa_stages", "ofa_branch_weight", "ofa_final_logits")} == {
        "ofa_stages": [1, 2, 3, 4], "ofa_branch_weight": 0.1, "ofa_final_logits": False,
    }  # fmt: skip
    _, _, args = parse_distill_args(
        ["--method", "fbt", *base, "--fbt_bridge_upsample", "false", "--fbt_transfer_paths", "assistant_student,teacher_student",
         "--fbt_infonce_mask_same_label", "--fbt_deep_supervision", "3,1", "--kd_temperature", "2"]
    )  # fmt: skip
    config = method_config("fbt", args.method_config)
    assert (config.fbt_bridge_upsample, config.fbt_infonce_mask_same_label, config.kd_temperature) == (False, True, 2.0)
    assert config.fbt_transfer_paths == ("teacher_student", "assistant_student") and config.fbt_deep_supervision == (1, 3)
    assert json.loads(json.dumps(args.method_config)) == config.to_dict()  # JSON form: what results.json holds


def test_flags_of_another_method_or_none_are_usage_errors_naming_them(tmp_path):
    base = ["--output_dir", str(tmp_path), "--use_cpu"]
    with pytest.raises(UsageError, match=r"^--fitnet_stage does not apply to --method kd \(an option of fitnet\); "):
        parse_distill_args(["--method", "kd", *base, "--fitnet_stage", "2"])
    # ofa's branch width has its own name: fbt_projector_dim is fbt's InfoNCE projectors'.
    with pytest.raises(UsageError, match=r"^--fbt_projector_dim does not apply to --method ofa \(an option of fbt\).*--ofa_branch_dim"):
        parse_distill_args(["--method", "ofa", *base, "--fbt_projector_dim", "16"])
    with pytest.raises(UsageError, match=r"^Unknown flags --no_such_flag 3: `hf-cakd distill --method fbt --help` lists them"):
        parse_distill_args(["--method", "fbt", *base, "--no_such_flag", "3"])
    with pytest.raises(UsageError, match=r"^Unknown flags --no_such_flag 3: `hf-cakd distill --help` lists them"):
        parse_distill_args([*base, "--no_such_flag", "3"])
    # Without --method (auto) a method's options have no method yet: the error names whose they are.
    with pytest.raises(
        UsageError,
        match=r"^--fbt_infonce_weight, --ofa_gamma: options of fbt, ofa or rsd; --method auto \(the default\) picks the method "
        r"by the student's family, so pass --method fbt with them\.$",
    ):
        parse_distill_args([*base, "--fbt_infonce_weight", "0.5", "--ofa_gamma", "1.5"])
    with pytest.raises(UsageError, match=r"^--fitnet_stage, --ofa_gamma do not apply to --method kd \(options of fbt, "):
        parse_distill_args(["--method", "kd", *base, "--fitnet_stage", "2", "--ofa_gamma", "1.5"])
    with pytest.raises(UsageError, match=r"^ofa_stages is a comma list of 1, 2, 3, 4 \(or empty\), got '1,5'"):
        parse_distill_args(["--method", "ofa", *base, "--ofa_stages", "1,5"])


def test_a_config_file_may_group_the_methods_options_under_its_name(tmp_path):
    config = tmp_path / "run.yaml"
    run = {"method": "ofa", "output_dir": str(tmp_path / "out"), "use_cpu": True}
    config.write_text(yaml.safe_dump(run | {"ofa": {"ofa_stages": [1, 2, 3, 4], "ofa_branch_weight": "1e-1"}}))
    _, _, args = parse_distill_args([str(config)])
    assert (args.method_config["ofa_stages"], args.method_config["ofa_branch_weight"]) == ([1, 2, 3, 4], 0.1)
    refusals = {
        "groups options under 'kd', but the run's method is 'ofa'": run | {"kd": {"kd_temperature": 2.0}},
        "gives ofa_branch_weight both under `ofa:` and at the top": run | {"ofa_branch_weight": 1, "ofa": {"ofa_branch_weight": 2}},
        r"--kd_temperature does not apply to --method ofa \(an option of fbt, kd, rsd\)": run | {"kd_temperature": 2.0},
    }
    for message, keys in refusals.items():
        config.write_text(yaml.safe_dump(keys))
        with pytest.raises(UsageError, match=message):
            parse_distill_args([str(config)])


@pytest.mark.parametrize(
    "argv",
    [
        ["--method", "fbt", "--infonce_weight", "0.5"],
        ["--method", "fbt", "--infonce-weight=0.5"],  # the dashed spelling, with its value
        ["--infonce_weight", "0.5"],  # --method auto: the old name is refused before the method is known
        ["--method", "fbt", "--method_config", '{"infonce_weight": 0.5}'],
        ["CONFIG", {"method": "fbt", "fbt": {"infonce_weight": 0.5}}],  # a config file, options under the method
        ["CONFIG", {"infonce_weight": 0.5}],
    ],
)
def test_an_old_option_name_is_a_one_line_usage_error_naming_its_new_one(tmp_path, capsys, argv):
    if argv[0] == "CONFIG":
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "use_cpu": True} | argv[1]))
        argv = [str(config)]
    else:
        argv = [*argv, "--output_dir", str(tmp_path / "out"), "--use_cpu"]
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["distill", *argv])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --infonce_weight was renamed --fbt_infonce_weight.\n"
    assert not (tmp_path / "out").exists()


def test_a_removed_option_is_a_usage_error_saying_where_the_reason_is(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["distill", "--method", "fbt", "--own_teacher_suffix", "--output_dir", str(tmp_path), "--use_cpu"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --own_teacher_suffix was removed (docs/method.md says why).\n"


@pytest.mark.parametrize("flags", [["--disable_tqdm", "true"], []])
def test_loading_and_saving_bars_follow_disable_tqdm(tmp_path, flags):
    """transformers' "Loading weights" / "Writing model shards" bars ignored --disable_tqdm (and showed on every rank)."""
    from hf_cakd.cli import setup_logging

    *_, training_args = parse_distill_args(["--teacher", "t", "--output_dir", str(tmp_path), "--use_cpu", *flags])
    try:
        setup_logging(training_args)
        assert transformers.utils.logging.is_progress_bar_enabled() == (not flags)
    finally:
        transformers.utils.logging.enable_progress_bar()


def run_hf_cakd(argv: list[str], capsys) -> tuple[int, str]:
    """``hf-cakd ARGV`` in this process: its exit code and what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_:
        hf_cakd_main(argv)
    return exit_.value.code, capsys.readouterr().err


def test_output_dir_is_required_and_nothing_is_written(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # transformers' default, ./trainer_output, would land here
    code, err = run_hf_cakd(["distill", *without(distill_args(workspace, "kd", "unused"), "--output_dir")], capsys)
    assert code == 2 and err.splitlines() == [
        "error: --output_dir DIR is required: the folder the student, its card, results.json and the checkpoints are "
        "written to."
    ]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"teacher": str(workspace["teacher"]), "dataset": str(workspace["data"])}))
    code, err = run_hf_cakd(["distill", str(config)], capsys)
    assert code == 2 and err.startswith(f"error: {config} has no output_dir: add `output_dir: DIR`")
    assert sorted(os.listdir(tmp_path)) == ["run.yaml"]


@pytest.mark.parametrize("typo, meant", [("--max_step", "--max_steps"), ("--learning_rat", "--learning_rate"),
                                         ("--meth", "--method"), ("--teach", "--teacher")])  # fmt: skip
def test_abbreviated_flags_are_refused_not_taken_for_the_flag_they_begin(typo, meant, tmp_path, capsys):
    argv = ["--teacher", "t", "--output_dir", str(tmp_path / "out"), typo, "kd" if meant == "--method" else "2"]
    code, err = run_hf_cakd(["distill", *argv], capsys)
    assert code == 2 and err.startswith(f"error: Unknown flags {typo} ") and len(err.splitlines()) == 1


def test_a_mistyped_dataset_path_without_network_is_one_line_in_seconds(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    import datasets
    import fake_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # a machine without network, and nobody said so
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    requests = []
    fake_hub.install(fake_hub.unreachable(requests))
    monkeypatch.chdir(workspace["root"])
    code, err = run_hf_cakd(["distill", *with_flag(distill_args(workspace, "kd", tmp_path / "out"), "--dataset", "cifar10-tin")], capsys)
    assert code == 3, err
    assert err.startswith("error: --dataset 'cifar10-tin': there is no local folder or file ")
    assert "(closest: cifar10-tiny), and the Hub could not be reached" in err and len(err.splitlines()) == 1
    asked = [path for _, path in requests if "cifar10-tin" in path]
    assert asked == ["/api/datasets/cifar10-tin"] and not (tmp_path / "out").exists()  # once: no retries to wait through


def flag_help(capsys, *argv) -> dict[str, str]:
    """``hf-cakd distill <argv>``'s help text of each flag, on one line, by flag."""
    with pytest.raises(SystemExit):
        distill_main(list(argv))
    text = capsys.readouterr().out
    entries = re.findall(r"^  (--\w+)[^\n]*\n((?:\s{20,}.*\n)*)", text + "\n", re.M)
    return {flag: " ".join(body.split()) for flag, body in entries}


def test_each_default_is_stated_once_and_the_flags_whose_meaning_we_change_have_our_help(capsys):
    helps = flag_help(capsys, "--help_all")
    # argparse's "(default: X)" appended to a help that states its default already ("Default: detected.")
    twice = [flag for flag, text in helps.items() if "(default: " in text and text.lower().count("default") > 1]
    assert twice == [] and not [flag for flag, text in helps.items() if "(default: None)" in text]
    assert helps["--image_column"] == "Default: detected."
    assert "or 'last': the newest complete checkpoint in --output_dir" in helps["--resume_from_checkpoint"]
    ours = ("output_dir", "resume_from_checkpoint", "label_smoothing_factor", "log_level", "disable_tqdm", "push_to_hub",
            "hub_model_id", "activation_checkpointing")  # fmt: skip
    transformers_help = {f.name: f.metadata["help"] for f in dataclasses.fields(transformers.TrainingArguments)}
    for name in ours:
        assert helps[f"--{name}"] and transformers_help[name] not in helps[f"--{name}"], name


def test_distill_from_python_logs_like_the_command_line(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    run_logger, trainer_logger = logging.getLogger("hf_cakd"), logging.getLogger("transformers.trainer")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # a script that set up no logging
    for logger in (run_logger, trainer_logger):
        for name in ("handlers", "filters", "level"):
            monkeypatch.setattr(logger, name, copy.copy(getattr(logger, name)))
    distill(*parse_distill_args(distill_args(workspace, "kd", tmp_path / "out")))
    err = capsys.readouterr().err
    assert re.search(r"^\S+ \S+ INFO hf_cakd\.run\.plan: Plan: --method kd, ", err, re.M), err[-3000:]
    assert re.search(r"^\S+ \S+ INFO hf_cakd\.run\.pipeline: Student on 16 eval images: top-1 ", err, re.M)
    assert trainer_logger.level == logging.INFO  # the Trainer's plan and progress, as from the command line
    advert = trainer_logger.makeRecord("transformers.trainer", logging.INFO, "", 0, "\n\nTraining completed. Do not "
                                       "forget to share your model on huggingface.co/models =)\n\n", (), None)
    assert not trainer_logger.filter(advert)
