"""benchmarks.common: the pieces the benchmarks share (no training here)."""

from __future__ import annotations

import pytest

from benchmarks.common import (
    REPO,
    Schedule,
    benchmark_methods,
    options_for,
    read_results,
    shown_path,
    training_arguments,
    update_readme,
    write_results,
    write_table,
)
from hf_cakd.methods import METHODS


def test_methods_come_from_the_registry_baseline_first_fbt_last():
    methods = benchmark_methods()
    assert sorted(methods) == sorted(METHODS)
    assert methods[0] == "none" and methods[-1] == "fbt"
    assert "fitnet" not in benchmark_methods(exclude=("fitnet",))


def test_options_for_keeps_the_options_a_method_has():
    assert options_for("kd", kd_temperature=2.0, fitnet_stage=4) == {"kd_temperature": 2.0}
    assert options_for("none", kd_temperature=2.0) == {}


def test_training_arguments_take_the_schedule_then_overrides(tmp_path):
    args = training_arguments(tmp_path, "kd", {"kd_temperature": 2.0}, Schedule(warmup=80), seed=3, use_cpu=True)
    assert (args.method, args.method_config["kd_temperature"], args.seed) == ("kd", 2.0, 3)
    assert (args.learning_rate, args.weight_decay, args.warmup_steps) == (1e-3, 0.05, 80)
    assert args.lr_scheduler_type == "cosine" and args.report_to == [] and args.disable_tqdm
    with pytest.raises(ValueError, match="does not apply to --method none"):
        training_arguments(tmp_path, "none", {"kd_temperature": 2.0})


def test_readme_region_is_replaced_or_added_at_the_end_of_benchmarks(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nintro\n\n## Next\n\ntail\n")
    update_readme(readme, "table 1\n", "speed")
    assert readme.read_text() == (
        "# x\n\n## Benchmarks\n\nintro\n\n<!-- speed:start -->\ntable 1\n<!-- speed:end -->\n\n## Next\n\ntail\n"
    )
    update_readme(readme, "table 2\n", "speed")
    assert "table 2\n<!-- speed:end -->" in readme.read_text() and "table 1" not in readme.read_text()


def test_results_round_trip_and_a_missing_file_says_what_to_do(tmp_path):
    write_results(tmp_path / "out", {"a": 1})
    assert read_results(tmp_path / "out") == {"a": 1}
    write_table(tmp_path / "out", "| t |\n", None, "speed")
    assert (tmp_path / "out" / "table.md").read_text() == "| t |\n"
    with pytest.raises(SystemExit, match="without --report_only first"):
        read_results(tmp_path / "elsewhere")


def test_shown_paths_name_no_machine():
    assert shown_path(REPO / "demo_data" / "cifar10") == "demo_data/cifar10"
    assert shown_path("uoft-cs/cifar10") == "uoft-cs/cifar10"
    assert shown_path("timm:resnet18") == "timm:resnet18"
