"""Faults through the command line (scripts/distill.py in a child process): one short message, a documented exit code, nothing lost.

Exit codes (hf_cakd.errors): 0 done, 1 internal error, 2 usage, 3 input, 4 NaN/inf, 75 pre-empted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
from transformers import AutoConfig

from hf_cakd.cli import distill_main
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME, last_complete_checkpoint
from test_distill_script import CIFAR_NAMES, distill_args, workspace  # noqa: F401  (workspace: a fixture)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "distill.py"


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one-line message the CLI printed; the policy forbids a traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # A progress bar may leave its line open, so the message can follow it on the same line.
    lines = [line[line.index("error: ") :] for line in result.stderr.splitlines() if "error: " in line]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def with_dataset(args: list[str], data: Path) -> list[str]:
    args = list(args)
    args[args.index("--dataset") + 1] = str(data)
    return args


def rewrite_split(source: Path, target: Path, change) -> Path:
    """A copy of the workspace dataset whose train split went through ``change(table) -> table``."""
    target.mkdir()
    shutil.copy(source / "test.parquet", target / "test.parquet")
    pq.write_table(change(pq.read_table(source / "train.parquet")), target / "train.parquet")
    return target


def strings(table: pa.Table) -> pa.Table:
    names = pa.array([CIFAR_NAMES[i] for i in table.column("label").to_pylist()])
    return table.replace_schema_metadata(None).set_column(table.schema.get_field_index("label"), "label", names)


@pytest.mark.slow  # an end-to-end CLI run per case: tens of seconds on a 2-core CPU
def test_string_labels_are_class_encoded(workspace, tmp_path):
    data = tmp_path / "string-labels"
    data.mkdir()
    for split in ("train", "test"):
        pq.write_table(strings(pq.read_table(workspace["data"] / f"{split}.parquet")), data / f"{split}.parquet")
    output_dir = tmp_path / "out"
    result = run_script(with_dataset(distill_args(workspace, "kd", output_dir), data), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    id2label = AutoConfig.from_pretrained(output_dir).id2label
    assert set(id2label.values()) <= set(CIFAR_NAMES) and len(id2label) == 10


@pytest.mark.slow  # an end-to-end CLI run per case: tens of seconds on a 2-core CPU
def test_missing_image_is_named_by_row_or_skipped_and_counted(workspace, tmp_path):
    def empty_row_3(table):
        images = table.column("img").to_pylist()
        images[3] = None
        field = table.schema.field("img")
        return table.set_column(table.schema.get_field_index("img"), field, pa.array(images, type=field.type))

    data = rewrite_split(workspace["data"], tmp_path / "missing", empty_row_3)
    args = with_dataset(distill_args(workspace, "kd", tmp_path / "stopped"), data)
    result = run_script(args, tmp_path)
    assert result.returncode == 3
    message = error_line(result)
    assert "Row 3" in message and "missing" in message and "--skip_bad_images" in message

    output_dir = tmp_path / "skipped"
    args = with_dataset(distill_args(workspace, "kd", output_dir, "--skip_bad_images", "--max_steps", "6"), data)
    result = run_script(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # 6 steps of 8 cover all 48 rows once: the empty one is skipped exactly once.
    assert json.loads((output_dir / "results.json").read_text())["skipped_images"] == {"train": 1, "eval": 0}


@pytest.mark.slow  # an end-to-end CLI run per case: tens of seconds on a 2-core CPU
def test_truncated_teacher_weights_name_the_flag_and_the_file(workspace, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(workspace["teacher"], teacher)
    weights = teacher / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    args = distill_args(workspace, "kd", tmp_path / "out")
    args[args.index("--teacher") + 1] = str(teacher)
    result = run_script(args, tmp_path)
    assert result.returncode == 3
    message = error_line(result)
    assert "--teacher" in message and "model.safetensors" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # an end-to-end CLI run per case: tens of seconds on a 2-core CPU
def test_resuming_another_methods_checkpoint_is_refused_naming_both(workspace, tmp_path):
    output_dir = tmp_path / "kd-run"
    distill_main(distill_args(workspace, "kd", output_dir, "--save_strategy", "steps", "--save_steps", "2"))
    before = {p: p.read_bytes() for p in output_dir.rglob("*") if p.is_file()}
    result = run_script(distill_args(workspace, "fbt", output_dir, "--resume_from_checkpoint", "last"), tmp_path)
    assert result.returncode == 3
    message = error_line(result)
    assert "method: checkpoint 'kd', this run 'fbt'" in message
    assert {p: p.read_bytes() for p in output_dir.rglob("*") if p.is_file()} == before  # nothing lost or rewritten


def test_usage_errors_exit_with_2_and_one_line(workspace, tmp_path):
    result = run_script(distill_args(workspace, "kd", tmp_path / "out", "--fitnet_stage", "2"), tmp_path)
    assert result.returncode == 2
    assert "--fitnet_stage does not apply to --method kd" in error_line(result)
    result = run_script(distill_args(workspace, "kd", tmp_path / "out")[:-2] + ["--method", "fbtt"], tmp_path)
    assert result.returncode == 2 and "invalid choice: 'fbtt'" in result.stderr


@pytest.mark.slow  # an end-to-end CLI run per case: tens of seconds on a 2-core CPU
def test_sigterm_saves_a_complete_checkpoint_exits_75_and_resumes(workspace, tmp_path):
    schedule = ["--max_steps", "12", "--logging_steps", "1"]
    preempted = tmp_path / "preempted"
    command = [sys.executable, str(SCRIPT), *distill_args(workspace, "kd", preempted, *schedule)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged, deadline = 0, time.monotonic() + 300
    for line in child.stdout:  # the Trainer prints one dict per logged step
        logged += "'loss'" in line
        if logged == 2 or time.monotonic() > deadline:
            sent_at = time.monotonic()
            child.send_signal(signal.SIGTERM)
            break
    stdout, stderr = child.communicate(timeout=300)
    seconds = time.monotonic() - sent_at
    assert child.returncode == 75, stderr[-3000:]
    assert seconds < 30  # Kubernetes' default grace period
    checkpoint = last_complete_checkpoint(str(preempted))
    assert checkpoint is not None and (Path(checkpoint) / CHECKPOINT_COMPLETE_NAME).is_file()
    step = int(checkpoint.rsplit("-", 1)[1])
    assert 2 <= step < 12 and f"at step {step}" in stderr and "--resume_from_checkpoint last" in stderr
    assert "Traceback" not in stderr

    distill_main(distill_args(workspace, "kd", preempted, *schedule, "--resume_from_checkpoint", "last"))
    distill_main(distill_args(workspace, "kd", tmp_path / "uninterrupted", *schedule))
    expected = safetensors.torch.load_file(tmp_path / "uninterrupted" / "model.safetensors")
    final = safetensors.torch.load_file(preempted / "model.safetensors")
    # As in the SIGKILL resume tests: equal up to the random crops of the batch fetched ahead.
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, atol=1e-3, rtol=0, msg=name)
