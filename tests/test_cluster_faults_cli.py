"""The command line on the machines distillation runs on (scripts/distill.py in a child process).

Cases and exit codes (docs/operations.md, "Exit codes"): a model or data set the Hub cannot deliver (not cached
while offline, not found, gated, a download cut off) 3; an --output_dir that is a file, cannot be
created or cannot be written 3, before anything loads; a disk that fills up during a save 3, the
last complete checkpoint untouched and resumable. A Hub token given by flag, environment or config
file is in no byte the run writes, prints or pushes. A CPU run prints no warning the user cannot act
on. The slow ones (each a child process of its own) run with ``-m slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForImageClassification

import hf_cakd.training.checkpointing
import hf_cakd.run.plan
from hf_cakd.cli import distill_main
from hf_cakd.errors import InputError
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME, CheckpointIO, last_complete_checkpoint
from test_distill_script import distill_args, fake_hub, workspace  # noqa: F401  (fixtures)
from test_faults_cli import SCRIPT, error_line

TESTS = Path(__file__).resolve().parent
TOKEN = "hf_ThisTokenMustNeverBeWritten0123456789"

# Runs scripts/distill.py with huggingface_hub's own client (``real``) or behind a fake Hub:
# ``refusing:<code>``, ``cut_off:<folder>`` (serving that folder, the weights' first download dropped
# midway), or ``uploads:<folder>`` (HfApi's uploads copy what they would send into that folder and
# record whether they had the token), then the flags.
CHILD = r"""
import concurrent.futures, os, runpy, shutil, sys
from pathlib import Path

tests, script, hub, *argv = sys.argv[1:]
sys.path.insert(0, tests)
kind, _, value = hub.partition(":")
if kind == "refusing":
    import fake_hub
    fake_hub.install(fake_hub.refusing(value))
elif kind == "cut_off":
    import fake_hub
    fake_hub.install(fake_hub.serving(Path(value), cut_off="model.safetensors"))
elif kind == "uploads":
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
    from huggingface_hub.utils import filter_repo_objects

    uploads = Path(value)
    commits = iter(range(1000))

    def sent(api, kwargs):
        # Whether this upload would authenticate with the run's token (flag, environment or config file).
        token = kwargs.get("token") or api.token or os.environ.get("HF_TOKEN")
        with open(uploads / "authenticated.txt", "a") as log:
            log.write(f"{token == os.environ['EXPECTED_TOKEN']}\n")
        return uploads / f"commit-{next(commits)}"

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        target, root = sent(self, kwargs), Path(folder_path)
        local = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        ignore = list(ignore_patterns or []) + DEFAULT_IGNORE_PATTERNS
        for name in filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / name, target / name)
        if kwargs.get("run_as_future"):
            done = concurrent.futures.Future()
            done.set_result(None)
            return done

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, **kwargs):
        target = sent(self, kwargs) / path_in_repo
        target.parent.mkdir(parents=True)
        target.write_bytes(path_or_fileobj)

    HfApi.create_repo = lambda self, repo_id, **kwargs: type("RepoUrl", (), {"repo_id": repo_id})()
    HfApi.upload_folder, HfApi.upload_file = upload_folder, upload_file
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""


def run_cli(args: list[str], cwd: Path, hub: str = "real", **env) -> subprocess.CompletedProcess:
    """scripts/distill.py ``args`` in a child process, offline unless ``env`` says otherwise."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}
    command = [sys.executable, "-c", CHILD, str(TESTS), str(SCRIPT), hub, *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def recording_resumes(monkeypatch) -> list[str]:
    """The checkpoints a DistillationTrainer resumes from, as it loads them."""
    resumed_from, load = [], CheckpointIO.load
    monkeypatch.setattr(
        CheckpointIO, "load", lambda self, d, **kwargs: resumed_from.append(d) or load(self, d, **kwargs)
    )
    return resumed_from


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str):
    """A tmpfs at ``mount_point`` mounted with ``options``; yields False where this machine cannot mount one."""
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)]
    mounted = os.geteuid() == 0 and subprocess.run(command, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


# ---- 1. Hub problems: exit 3, one line naming the flag, the id and the fix ----


def test_offline_teacher_not_in_the_cache_exits_3_at_once_naming_hf_download(workspace, tmp_path):
    args = with_flag(distill_args(workspace, "kd", tmp_path / "out"), "--teacher", "google/vit-base-patch16-224")
    result = run_cli(args, tmp_path, HF_HOME=str(tmp_path / "empty-hf-home"))
    assert result.returncode == 3, result.stderr[-3000:]
    message = error_line(result)
    assert message.startswith("error: --teacher 'google/vit-base-patch16-224' is not in the local cache and HF_HUB")
    assert "`hf download google/vit-base-patch16-224`" in message
    assert "Retrying" not in result.stderr and "Trying to resume" not in result.stderr  # nothing waited for a network
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, flag, hub, expected",
    [
        ("offline dataset", "--dataset", "refusing:RepoNotFound", "is not in the local cache and HF_HUB_OFFLINE=1"),
        ("not found", "--teacher", "refusing:RepoNotFound", "was not found: there is no local folder"),
        ("gated", "--teacher", "refusing:GatedRepo", "is a gated repository and no Hub token is set"),
        ("cut off", "--teacher", "cut_off:", "failed: the network failed (ReadError"),
    ],
)
def test_hub_problems_exit_3_naming_the_flag_the_id_and_the_fix(workspace, tmp_path, case, flag, hub, expected):
    spec = "someone/tiny-data" if flag == "--dataset" else "someone/tiny-teacher"
    args = with_flag(distill_args(workspace, "kd", tmp_path / "out"), flag, spec)
    online = {} if case == "offline dataset" else {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
    hub = f"cut_off:{workspace['teacher']}" if hub == "cut_off:" else hub
    token_free = {"HF_TOKEN": "", "HF_TOKEN_PATH": str(tmp_path / "no-token")}
    result = run_cli(args, tmp_path, hub, HF_HOME=str(tmp_path / "hf-home"), **online, **token_free)
    assert result.returncode == 3, result.stderr[-3000:]
    message = error_line(result)
    assert message.startswith(f"error: {flag} {spec!r} ") or message.startswith(f"error: Downloading {flag} {spec!r}")
    assert expected in message
    fix = {"offline dataset": "--repo-type dataset --local-dir", "not found": "`hf auth login`", "gated": "HF_TOKEN"}
    assert fix.get(case, "Run the same command again to resume") in message
    assert not (tmp_path / "out").exists()


# ---- 2. The Hub token: in no byte the run writes, prints or pushes ----


def assert_token_nowhere(*places: Path, streams: str = "") -> None:
    for place in places:
        for path, content in files_under(place).items():
            assert TOKEN.encode() not in content, path
    assert TOKEN not in streams


def push_args(workspace, output_dir: Path, max_steps: int = 2) -> list[str]:
    args = distill_args(workspace, "kd", output_dir, "--save_strategy", "steps", "--save_steps", "1", "--push_to_hub")
    return with_flag(args, "--max_steps", str(max_steps)) + ["--hub_model_id", "user/student"]


def as_config(args: list[str]) -> dict:
    """Command-line flags as the keys of a config file: numbers as numbers, a flag without a value true."""

    def scalar(value: str):
        for number in (int, float):
            with contextlib.suppress(ValueError):
                return number(value)
        return value

    config, i = {}, 0
    while i < len(args):
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        config[args[i].removeprefix("--")] = scalar(args[i + 1]) if has_value else True
        i += 2 if has_value else 1
    return config


@pytest.mark.parametrize(
    "source", ["flag", *(pytest.param(source, marks=pytest.mark.slow) for source in ("environment", "config file"))]
)
def test_the_hub_token_is_in_no_written_printed_or_pushed_byte_and_a_cpu_run_prints_no_warning(
    workspace, tmp_path, fake_hub, source
):
    output_dir, uploads = tmp_path / "out", tmp_path / "uploads"
    uploads.mkdir()
    args, env = push_args(workspace, output_dir), {"EXPECTED_TOKEN": TOKEN, "HF_TOKEN": ""}
    args.remove("--use_cpu")  # a plain run on a machine without an accelerator
    if source == "flag":
        args += ["--hub_token", TOKEN]
    elif source == "environment":
        env["HF_TOKEN"] = TOKEN
    else:
        config = tmp_path / "run.yaml"  # the user's own file, outside what the run writes
        config.write_text(yaml.safe_dump(as_config(args) | {"hub_token": TOKEN}))
        args = [str(config)]
    result = run_cli(args, tmp_path, f"uploads:{uploads}", **env)
    assert result.returncode == 0, result.stderr[-3000:]

    assert (output_dir / "checkpoint-2" / "training_args.bin").is_file()
    assert sorted(p.name for p in uploads.glob("commit-*/training_args.bin")) == ["training_args.bin"] * 2
    assert_token_nowhere(output_dir, uploads, streams=result.stdout + result.stderr)
    # The pushes authenticated with it all the same: they read it from the flag or the environment.
    assert (uploads / "authenticated.txt").read_text().split() == ["True"] * 4  # 2 checkpoints, student, card
    saved_args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert saved_args.hub_token is None and saved_args.hub_model_id == "user/student"

    # No warning a user cannot act on; the plan, per-term losses and results at INFO.
    log = result.stdout + result.stderr
    assert "pin_memory" not in log and "Repo card metadata block" not in log
    # The one warning: the workspace's teacher is untrained, and a user can act on that.
    near_chance = "WARNING hf_cakd.run.pipeline: The teacher's top-1 on the test split is 6.25%, near chance"
    assert log.count(near_chance) == 1
    assert not re.search(r"Warning\b|\bWARNING\b", log.replace(near_chance, "")), log[-3000:]
    assert "INFO hf_cakd.run.plan: Plan: --method kd, teacher " in log and "Total optimization steps = 2" in log
    assert "'loss_kd'" in log and "INFO hf_cakd.run.pipeline: Student on 16 eval images: top-1" in log

    # A resume reads the token from its own flags too, and writes it nowhere either.
    with pytest.MonkeyPatch.context() as patch:
        resumed_from = recording_resumes(patch)
        resume = ["--hub_token", TOKEN, "--resume_from_checkpoint", "last"]
        distill_main(push_args(workspace, output_dir, max_steps=3) + resume)
    assert resumed_from == [str(output_dir / "checkpoint-2")]
    checkpoint_push = next(call for name, call in fake_hub if name == "upload_folder")
    assert checkpoint_push["token"] == TOKEN and "training_args.bin" in checkpoint_push["files"]
    assert_token_nowhere(output_dir)


# ---- 3. Output paths ----


def test_an_output_dir_that_is_a_file_is_refused_before_anything_loads(workspace, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.write_text("someone's file\n")
    monkeypatch.setattr(hf_cakd.run.plan, "load_image_dataset", None)  # called, it would fail with a TypeError
    with pytest.raises(InputError, match=rf"^--output_dir {re.escape(str(taken))} is a file\. Pass a folder path"):
        distill_main(distill_args(workspace, "kd", taken))
    assert taken.read_text() == "someone's file\n"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_an_output_dir_that_cannot_be_used_stops_before_loading_naming_it(workspace, tmp_path, case):
    taken = tmp_path / "taken"
    taken.write_text("someone's file\n")
    with contextlib.ExitStack() as stack:
        if case == "a file":
            output_dir, expected = taken, f"--output_dir {taken} is a file. Pass a folder path"
        elif case == "under a file":
            output_dir, expected = taken / "out", f"--output_dir {taken / 'out'} cannot be created: {taken} is a file."
        else:
            read_only = tmp_path / "read-only"
            if not stack.enter_context(tmpfs(read_only, "ro,size=1m")):
                if os.geteuid() == 0:
                    pytest.skip("no read-only folder here: root writes anywhere and cannot mount")
                read_only.chmod(0o555)
            output_dir = read_only / "out"
            expected = f"--output_dir {output_dir} cannot be created in {read_only} ("
        before = files_under(tmp_path)
        result = run_cli(distill_args(workspace, "kd", output_dir), tmp_path)
        assert result.returncode == 3, result.stderr[-3000:]
        assert expected in error_line(result)
        assert files_under(tmp_path) == before  # nothing written anywhere
        assert "Generating train split" not in result.stderr  # stopped before the data was loaded


# ---- a full disk during a save ----

FULL_DISK_AT_CHECKPOINT_3 = r"""
import errno, os, runpy, sys
import torch

script, *argv = sys.argv[1:]
real_save = torch.save


def save(obj, f, *args, **kwargs):
    if str(f).endswith(os.path.join("checkpoint-3", "optimizer.pt")):
        with open(f, "wb") as partial:
            partial.write(b"half an optimizer")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
    return real_save(obj, f, *args, **kwargs)


torch.save = save
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.slow
def test_a_full_disk_during_a_save_exits_3_and_resumes_from_the_last_complete_checkpoint(
    workspace, tmp_path, monkeypatch
):
    """On a real 1.4 MB tmpfs where this machine can mount one (3 checkpoints of the tiny run do not
    fit), else with torch.save failing with ENOSPC at checkpoint-3 in the child."""
    with tmpfs(tmp_path / "small", "size=1400k") as mounted:
        output_dir = tmp_path / "small" / "out"
        schedule = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "1"]
        args = distill_args(workspace, "kd", output_dir, *schedule)
        if mounted:
            result = run_cli(args, tmp_path)
        else:
            command = [sys.executable, "-c", FULL_DISK_AT_CHECKPOINT_3, str(SCRIPT), *args]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 3, result.stderr[-3000:]
        message = error_line(result)
        checkpoint = re.escape(str(output_dir / "checkpoint-"))
        failed = re.match(rf"error: No space left on the disk of {checkpoint}(\d+): ", message)
        assert failed, message
        step = int(failed[1])
        last = output_dir / f"checkpoint-{step - 1}"
        assert step >= 2 and re.search(r"a checkpoint takes about \d+\.\d MB \(the size of checkpoint-", message)
        assert message.endswith(f"last to continue from {last}, the last complete checkpoint, which is untouched.")
        # The half-written checkpoint is gone, every earlier one complete and loadable.
        assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == [f"checkpoint-{i}" for i in range(1, step)]
        assert last_complete_checkpoint(str(output_dir)) == str(last)
        assert (last / CHECKPOINT_COMPLETE_NAME).read_text() == f"step {step - 1}\n"
        AutoModelForImageClassification.from_pretrained(last)

        if mounted:  # space is freed: the disk grows
            subprocess.run(["mount", "-o", "remount,size=64m", str(tmp_path / "small")], check=True)
        resumed_from = recording_resumes(monkeypatch)
        results = distill_main(args + ["--resume_from_checkpoint", "last"])
        assert resumed_from == [str(last)]
        assert json.loads((output_dir / "results.json").read_text()) == json.loads(json.dumps(results))
        assert last_complete_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-6")


# ---- cluster re-runs: a requeued job, a reused folder, a read-only cache ----


def test_resume_last_takes_the_checkpoint_completed_last_not_an_older_runs_higher_step(tmp_path):
    """--overwrite_output_dir keeps an earlier run's checkpoint-40; a pre-empted new run resumes its own checkpoint-12."""
    for step, completed_at in ((40, 1_000_000), (12, 2_000_000)):
        marker = tmp_path / f"checkpoint-{step}" / CHECKPOINT_COMPLETE_NAME
        marker.parent.mkdir()
        marker.write_text(f"step {step}\n")
        os.utime(marker, (completed_at, completed_at))
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-12")


def test_resume_last_starts_a_new_folder_afresh_and_refuses_one_without_a_checkpoint_before_loading(
    workspace, tmp_path, monkeypatch
):
    """One command for a job's first run and its requeues (SLURM --requeue, a Kubernetes restart)."""
    resume_point = hf_cakd.training.checkpointing.resume_point
    assert resume_point(True, str(tmp_path / "new")) is None
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("not a checkpoint\n")
    monkeypatch.setattr(hf_cakd.run.plan, "load_image_dataset", None)  # called, it would fail with a TypeError
    args = distill_args(workspace, "kd", tmp_path / "used", "--resume_from_checkpoint", "last")
    with pytest.raises(InputError, match=r"^No complete checkpoint in .*used to resume from"):
        distill_main(args)


def test_a_read_only_datasets_cache_names_hf_datasets_cache_and_the_fix(workspace, tmp_path):
    from hf_cakd.data import load_image_dataset

    with tmpfs(tmp_path / "read-only", "ro,size=1m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a read-only tmpfs")
        with pytest.raises(InputError, match=r"cannot write its cache at .*read-only.*Set HF_DATASETS_CACHE"):
            load_image_dataset(str(workspace["data"]), cache_dir=str(tmp_path / "read-only"))


def test_a_second_run_into_a_folder_another_run_is_writing_into_stops_before_writing(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    with hf_cakd.training.checkpointing.writing_into(str(output_dir)):  # the first run, still training
        with pytest.raises(InputError, match=rf"^Another run is writing into {re.escape(str(output_dir))}: wait"):
            distill_main(distill_args(workspace, "kd", output_dir))
        assert list(output_dir.iterdir()) == []
        with hf_cakd.training.checkpointing.writing_into(str(output_dir), main_process=False):
            pass  # the other processes of the same run take no lock
    distill_main(distill_args(workspace, "kd", output_dir))  # the lock ends with the run that held it
    assert (output_dir / "results.json").is_file()


def test_one_command_runs_a_job_and_its_requeue_which_names_the_checkpoint_it_resumed(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "job"
    command = distill_args(
        workspace, "kd", output_dir, "--resume_from_checkpoint", "last", "--save_strategy", "steps", "--save_steps", "2"
    )
    first = distill_main(command)
    assert first["plan"]["resume_from_checkpoint"] is None and (output_dir / "checkpoint-2").is_dir()
    requeued = distill_main(command)  # a finished run, run again: loaded, not trained
    assert requeued["plan"]["resume_from_checkpoint"] == str(output_dir / "checkpoint-2")
    assert requeued["metrics"]["student"] == first["metrics"]["student"]
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-2"]
