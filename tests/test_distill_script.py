"""scripts/distill.py end to end: every method on a CNN teacher -> ViT student, on real CIFAR-10 rows.

The distilled student must load with plain transformers (``AutoModelForImageClassification``,
``pipeline``) in a process where hf_cakd cannot be imported, carry a model card whose metadata
the Hub can read, and be pushed to the Hub model files first, card last, checkpoints never.
Everything runs offline on tiny models, two training steps each.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
from huggingface_hub import HfApi, ModelCard, metadata_load
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTConfig, ViTImageProcessor

from hf_cakd.cli import distill_main
from hf_cakd.data import image_transforms, model_input_spec
from hf_cakd.errors import UsageError
from hf_cakd.methods import METHODS, method_class
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME, CheckpointIO, last_complete_checkpoint
from tiny_models import build, small_heads

ROOT = Path(__file__).resolve().parents[1]
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TIMM_VIT_ARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 4, "num_heads": 2}
TRAIN_ROWS, TEST_ROWS = 48, 16


@pytest.fixture(scope="module")
def distill():
    """What scripts/distill.py runs: ``distill.main(argv)`` parses flags and calls hf_cakd.distill."""
    return SimpleNamespace(main=distill_main)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 48/16-row slice of the demo CIFAR-10 parquet, a saved ResNet teacher, a ViT student config."""
    root = tmp_path_factory.mktemp("distill")
    data = root / "cifar10-tiny"
    data.mkdir()
    for split, rows in (("train", TRAIN_ROWS), ("test", TEST_ROWS)):
        table = pq.read_table(ROOT / "demo_data" / "cifar10" / f"{split}.parquet")
        pq.write_table(table.slice(0, rows), data / f"{split}.parquet")  # schema metadata (ClassLabel) kept

    teacher = build("hf-resnet")
    labels = dict(enumerate(CIFAR_NAMES))
    teacher.config.update({"id2label": labels, "label2id": {name: i for i, name in labels.items()}})
    teacher.save_pretrained(root / "teacher")
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    ViTImageProcessor(size={"height": 32, "width": 32}, **imagenet).save_pretrained(root / "teacher")

    student = root / "vit-student"  # a config and a processor, no weights: built from scratch
    vit = dict(image_size=32, patch_size=4, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    ViTConfig(**vit, num_hidden_layers=4).save_pretrained(student)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        student
    )
    return {"root": root, "data": data, "teacher": root / "teacher", "student": student}


def distill_args(workspace, method, output_dir, *extra, student=None):
    return [
        "--student", str(student or workspace["student"]),
        "--teacher", str(workspace["teacher"]),
        "--dataset", str(workspace["data"]),
        "--method", method,
        "--output_dir", str(output_dir),
        "--max_steps", "2",
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16",
        *(arg for name, width in small_heads(method).items() for arg in (f"--{name}", str(width))),
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--logging_steps", "1",
        "--seed", "0",
        "--use_cpu",
        "--report_to", "none",
        *extra,
    ]  # fmt: skip


RUNS = {name: (name, None, ()) for name in METHODS}
RUNS["fbt-timm-student"] = ("fbt", "timm:vit_tiny_patch16_224", ("--student_model_args", json.dumps(TIMM_VIT_ARGS)))


@pytest.fixture(scope="module")
def distilled(distill, workspace):
    """``distilled(run)`` -> the output directory of that run of distill.py, run once per module."""
    outputs = {}

    def run(name):
        if name not in outputs:
            method, student, extra = RUNS[name]
            output_dir = workspace["root"] / "out" / name
            results = distill.main(distill_args(workspace, method, output_dir, *extra, student=student))
            outputs[name] = (output_dir, results)
        return outputs[name]

    return run


@pytest.mark.parametrize("run", list(RUNS))
def test_distill_writes_student_results_and_card(distilled, workspace, run):
    output_dir, returned = distilled(run)
    method = RUNS[run][0]
    results = json.loads((output_dir / "results.json").read_text())
    assert results == json.loads(json.dumps(returned))
    assert results["method"] == method and results["families"] == {"teacher": "cnn", "student": "attention"}
    # FBT's assistant F is a classifier too, evaluated beside the student.
    assert set(results["metrics"]) == {"teacher", "student"} | ({"assistant"} if method == "fbt" else set())
    assert all(0 <= row["top1"] <= row["top5"] <= 1 for row in results["metrics"].values())
    assert results["method_config"] == method_class(method).config_class(**results["method_config"]).to_dict()
    for role in ("teacher", "student"):
        assert set(results["metrics"][role]) == {"top1", "top5"}
        for value in results["metrics"][role].values():
            assert isinstance(value, float) and 0.0 <= value <= 1.0
            assert (value * TEST_ROWS).is_integer()  # measured on the 16 test rows
    expected_source = "its image processor" if RUNS[run][1] is None else "the data (built from scratch)"
    assert results["input_resolution"]["student"] == {"size": [32, 32], "source": expected_source}
    assert results["input_resolution"]["teacher"] == {"size": [32, 32], "source": "its image processor"}
    # The run describes itself: results.json and distillation_config.json share the description.
    description = json.loads((output_dir / "distillation_config.json").read_text())
    assert {key: results[key] for key in description} == description
    assert description["student"]["family"] == "attention" and description["teacher"]["name_or_path"]

    files = set(os.listdir(output_dir))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "results.json"} <= files
    assert ("assistant" in files) == (method == "fbt")
    if method == "fbt":
        assistant_config = json.loads((output_dir / "assistant" / "config.json").read_text())
        assert assistant_config["model_type"] == "hf_cakd_assistant"

    readme = output_dir / "README.md"
    metadata = metadata_load(readme)
    card = ModelCard.load(readme)
    assert card.data.to_dict() == metadata
    assert "base_model" not in metadata  # built from scratch (a config directory, a timm: name)
    assert "datasets" not in metadata  # a local folder is no Hub dataset id
    # Local paths appear by their base name only, but for the folder the usage snippets load the student from.
    loading = [f'model="{output_dir}"', f'.from_pretrained("{output_dir}")']
    assert all(snippet in card.content for snippet in loading) and 'model="' + output_dir.name not in card.content
    assert str(workspace["root"]) not in card.content.replace(loading[0], "").replace(loading[1], "")
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "image-classification"
    assert f"distillation-{method}" in metadata["tags"] and "knowledge-distillation" in metadata["tags"]
    (model_index,) = metadata["model-index"]
    (result,) = model_index["results"]
    assert result["dataset"]["split"] == "test"  # the split the accuracy was measured on
    top1 = {m["name"]: m["value"] for m in result["metrics"]}["top-1 accuracy"]
    assert top1 == round(results["metrics"]["student"]["top1"], 4)
    assert f"`{method}`" in card.text and "| teacher |" in card.text and "| student |" in card.text
    assert ("| assistant |" in card.text) == (method == "fbt")  # F's own accuracy, beside the student's
    assert "- epochs seen: 0.33" in card.text  # 2 steps of 8 over 48 rows, not the 3.0 of --num_train_epochs
    # What the numbers mean: which rows, how the student started, what the card cannot promise.
    assert "## Results on cifar10-tiny (test split, 16 images)" in card.text
    assert "- trained on: 48 images of the train split of cifar10-tiny\n" in card.text
    assert "), built from scratch (random weights)\n" in card.text and "\n## Limitations\n" in card.text
    assert "measured on 16 images of the test split of cifar10-tiny only" in card.text


def test_timm_student_gets_a_processor_that_matches_its_eval_transform(distilled):
    """A timm: student has no processor of its own; the one saved for pipeline() must be its eval recipe."""
    output_dir, _ = distilled("fbt-timm-student")
    processor = AutoImageProcessor.from_pretrained(output_dir)
    student = AutoModelForImageClassification.from_pretrained(output_dir)
    saved, own = model_input_spec(processor=processor), model_input_spec(student)
    assert saved.size == own.size == (32, 32) and (saved.mean, saved.std) == (own.mean, own.std)
    # A 32 px image reaches the model as it is, with no resize to 35 and crop (timm's crop_pct 0.9).
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    pixels = processor(image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(pixels, image_transforms(student, train=False)(image))


def test_a_student_trained_at_another_resolution_than_its_processors_is_saved_with_a_processor_at_it():
    """--student_image_size overrides the student's own processor: the saved one must do the eval transform the
    student was evaluated with (pipeline() top-1 = results.json's), not its processor's old size."""
    from hf_cakd.run.pipeline import _saved_processor

    student = build("hf-resnet")
    own = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4] * 3, image_std=[0.2] * 3)
    assert _saved_processor(student, own, None) is own
    saved = _saved_processor(student, own, 48)
    assert model_input_spec(processor=saved) == model_input_spec(student, own, image_size=48)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    pixels = saved(image, return_tensors="pt")["pixel_values"][0]
    evaluated = image_transforms(student, own, train=False, image_size=48)(image)
    torch.testing.assert_close(pixels, evaluated, atol=2e-2, rtol=0)


# Run with hf_cakd unimportable, outside the repository, without PYTHONPATH: a user's machine.
LOAD_WITHOUT_HF_CAKD = r"""
import importlib.abc, json, sys

class BlockHfCakd(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_cakd" or name.startswith("hf_cakd."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, BlockHfCakd())
try:
    import hf_cakd
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hf_cakd is importable: the test would prove nothing")

import io, PIL.Image, pyarrow.parquet as pq
from transformers import AutoModelForImageClassification, pipeline

test_rows = pq.read_table(sys.argv[1]).to_pylist()
images = [PIL.Image.open(io.BytesIO(row["img"]["bytes"])) for row in test_rows]
report = {}
for output_dir in sys.argv[2:]:
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    classify = pipeline("image-classification", model=output_dir)
    predictions = classify(images, top_k=3)
    report[output_dir] = {
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "labels": [[p["label"] for p in image_predictions] for image_predictions in predictions],
        "top1": sum(p[0]["label"] == model.config.id2label[row["label"]] for p, row in zip(predictions, test_rows))
        / len(test_rows),
        "hf_cakd_loaded": any(name.startswith("hf_cakd") for name in sys.modules if sys.modules[name] is not None),
    }
print("REPORT" + json.dumps(report))
"""


def test_students_load_and_predict_without_hf_cakd(distilled, workspace, tmp_path):
    runs = {name: distilled(name) for name in RUNS}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-c", LOAD_WITHOUT_HF_CAKD, str(workspace["data"] / "test.parquet")]
    command += [str(output_dir) for output_dir, _ in runs.values()]
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.split("REPORT", 1)[1])
    for name, (output_dir, results) in runs.items():
        student = report[str(output_dir)]
        assert not student["hf_cakd_loaded"]
        assert student["model_class"].startswith("transformers.models.")
        assert len(student["labels"]) == TEST_ROWS
        assert all(len(labels) == 3 and set(labels) <= set(CIFAR_NAMES) for labels in student["labels"])
        if RUNS[name][1] is None:
            # ViTImageProcessor at 32 px and the eval transform agree on 32 px images: the pipeline
            # scores exactly what distill.py reported.
            assert student["top1"] == results["metrics"]["student"]["top1"], name


# ---- refusals ----


def test_non_empty_output_dir_is_refused_and_left_untouched(distill, workspace, tmp_path):
    output_dir = tmp_path / "previous-run"
    output_dir.mkdir()
    (output_dir / "model.safetensors").write_bytes(b"weights of another run")
    with pytest.raises(UsageError) as err:
        distill.main(distill_args(workspace, "kd", output_dir))
    assert "--overwrite_output_dir" in str(err.value) and str(output_dir) in str(err.value)
    assert os.listdir(output_dir) == ["model.safetensors"]
    assert (output_dir / "model.safetensors").read_bytes() == b"weights of another run"


@pytest.mark.parametrize("method", ["kd", "fbt"])
def test_distilling_without_a_teacher_is_refused(distill, workspace, tmp_path, method):
    args = distill_args(workspace, method, tmp_path / "out")
    teacher_at = args.index("--teacher")
    del args[teacher_at : teacher_at + 2]
    with pytest.raises(UsageError) as err:
        distill.main(args)
    assert "--teacher" in str(err.value) and f"--method {method}" in str(err.value)
    assert not (tmp_path / "out").exists()


# ---- a process killed while it writes a checkpoint ----

# Runs scripts/distill.py and stops dead inside one step of a checkpoint write, where the parent
# SIGKILLs it, as an OOM kill or a pre-empted node would.
KILLED_WHILE_SAVING = r"""
import os, runpy, shutil, sys, time
import torch

script, hanging_file, killed_while, *argv = sys.argv[1:]


def wait_for_the_kill():
    open(hanging_file, "w").close()
    time.sleep(600)


if killed_while == "optimizer":  # checkpoint-4's optimizer.pt is half on disk
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if str(f).endswith(os.path.join("checkpoint-4", "optimizer.pt")):
            os.truncate(f, os.path.getsize(f) // 2)
            wait_for_the_kill()

    torch.save = save
else:  # "rotation": save_total_limit=1 has just deleted checkpoint-2 for checkpoint-4
    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        if os.path.basename(str(path)).startswith("checkpoint-"):
            wait_for_the_kill()

    shutil.rmtree = rmtree
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize(
    "killed_while, save_total_limit, complete_step",
    [("optimizer", None, 2), pytest.param("rotation", 1, 4, marks=pytest.mark.slow)],  # the second: CI's slow suite
)
def test_sigkill_while_saving_resumes_from_the_last_complete_checkpoint(
    distill, workspace, tmp_path, monkeypatch, killed_while, save_total_limit, complete_step
):
    schedule = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2"]
    if save_total_limit:
        schedule += ["--save_total_limit", str(save_total_limit)]
    killed_dir, hanging_file = tmp_path / "killed", tmp_path / "hanging"
    command = [sys.executable, "-c", KILLED_WHILE_SAVING, str(ROOT / "scripts" / "distill.py"), str(hanging_file)]
    command += [killed_while, *distill_args(workspace, "fbt", killed_dir, *schedule)]
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not hanging_file.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert hanging_file.exists(), (tmp_path / "child.log").read_text()[-3000:]
        finally:
            child.kill()  # SIGKILL: no handler, no cleanup, no flush
            child.wait()
    assert child.returncode == -signal.SIGKILL

    checkpoints = sorted(p.name for p in killed_dir.glob("checkpoint-*"))
    if killed_while == "optimizer":
        assert checkpoints == ["checkpoint-2", "checkpoint-4"]
        assert not (killed_dir / "checkpoint-4" / CHECKPOINT_COMPLETE_NAME).exists()
    else:
        assert checkpoints == ["checkpoint-4"]  # marked complete before checkpoint-2 went
    assert last_complete_checkpoint(str(killed_dir)) == str(killed_dir / f"checkpoint-{complete_step}")

    resumed_from = []
    load = CheckpointIO.load
    monkeypatch.setattr(
        CheckpointIO, "load", lambda self, d, **kwargs: resumed_from.append(d) or load(self, d, **kwargs)
    )
    distill.main(distill_args(workspace, "fbt", killed_dir, *schedule, "--resume_from_checkpoint", "last"))
    assert resumed_from == [str(killed_dir / f"checkpoint-{complete_step}")]
    assert last_complete_checkpoint(str(killed_dir)) == str(killed_dir / "checkpoint-6")

    # The resumed student ends near an uninterrupted run's, not equal to it: accelerate's DataLoader
    # fetches one batch ahead, so the RNG state saved in a checkpoint has already drawn the random
    # crops of the next batch, and after a resume later batches get other crops.
    distill.main(distill_args(workspace, "fbt", tmp_path / "uninterrupted", *schedule))
    expected = safetensors.torch.load_file(tmp_path / "uninterrupted" / "model.safetensors")
    final = safetensors.torch.load_file(killed_dir / "model.safetensors")
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, atol=1e-3, rtol=0, msg=name)


# ---- the Hub push, at the HfApi boundary ----


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi's network methods replaced by recorders; any other Hub call fails (HF_HUB_OFFLINE)."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        # The files HfApi.upload_folder would send, chosen the way it chooses them.
        root = Path(folder_path)
        local = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        ignore = list(ignore_patterns or []) + DEFAULT_IGNORE_PATTERNS
        files = list(filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore))
        calls.append(("upload_folder", {"repo_id": repo_id, "files": files, **kwargs}))
        if kwargs.get("run_as_future"):  # the Trainer's checkpoint pushes run in the background
            done = concurrent.futures.Future()
            done.set_result(None)
            return done

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, **kwargs):
        if isinstance(path_or_fileobj, (str, Path)):
            content = Path(path_or_fileobj).read_bytes()
        elif isinstance(path_or_fileobj, bytes):
            content = path_or_fileobj
        else:
            content = path_or_fileobj.read()
        calls.append(("upload_file", {"repo_id": repo_id, "path_in_repo": path_in_repo, "content": content, **kwargs}))

    def create_commit(self, *args, **kwargs):
        raise AssertionError("unexpected HfApi.create_commit: uploads go through upload_folder / upload_file")

    for name, fake in dict(
        create_repo=create_repo, upload_folder=upload_folder, upload_file=upload_file, create_commit=create_commit
    ).items():
        monkeypatch.setattr(HfApi, name, fake)
    return calls


def test_push_to_hub_uploads_the_student_then_its_card_never_checkpoints(distill, workspace, tmp_path, fake_hub):
    output_dir = tmp_path / "pushed"
    distill.main(
        distill_args(
            workspace, "kd", output_dir,
            "--save_strategy", "steps", "--save_steps", "1",
            "--push_to_hub", "--hub_model_id", "user/repo", "--hub_private_repo", "true", "--hub_strategy", "end",
        )
    )  # fmt: skip
    assert (output_dir / "checkpoint-1").is_dir() and (output_dir / "checkpoint-2").is_dir()

    assert [name for name, _ in fake_hub] == ["create_repo", "upload_folder", "upload_file"]
    (_, repo), (_, folder), (_, card) = fake_hub
    assert repo["repo_id"] == "user/repo" and repo["private"] is True and repo["exist_ok"] is True

    assert folder["repo_id"] == "user/repo"
    uploaded = set(folder["files"])
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "results.json"} <= uploaded
    assert not any(path.startswith("checkpoint-") for path in uploaded)
    assert "README.md" not in uploaded and "training_args.bin" not in uploaded

    assert card["repo_id"] == "user/repo" and card["path_in_repo"] == "README.md"
    readme = (output_dir / "README.md").read_text(encoding="utf-8")
    assert card["content"].decode("utf-8") == readme
    assert 'pipeline("image-classification", model="user/repo")' in readme



def test_hub_strategy_every_save_pushes_checkpoints_then_the_student_and_its_card(distill, workspace, tmp_path, fake_hub):
    output_dir = tmp_path / "pushed"
    distill.main(
        distill_args(
            workspace, "kd", output_dir, "--save_strategy", "steps", "--save_steps", "1",
            "--push_to_hub", "--hub_model_id", "user/repo", "--hub_strategy", "every_save",
        )
    )  # fmt: skip
    messages = [call.get("commit_message") for name, call in fake_hub if name == "upload_folder"]
    assert messages == ["Training in progress, step 1", "Training in progress, step 2", "Upload distilled student (hf_cakd)"]
    assert fake_hub[-1][0] == "upload_file" and fake_hub[-1][1]["path_in_repo"] == "README.md"
    readme = (output_dir / "README.md").read_text(encoding="utf-8")
    assert fake_hub[-1][1]["content"].decode("utf-8") == readme  # our card, not the Trainer's


def test_push_without_an_eval_split_still_uploads_the_student(distill, workspace, tmp_path, fake_hub):
    data = tmp_path / "train-only"
    data.mkdir()
    (data / "train.parquet").write_bytes((workspace["data"] / "train.parquet").read_bytes())
    args = distill_args(workspace, "kd", tmp_path / "pushed", "--push_to_hub", "--hub_model_id", "user/repo")
    args[args.index("--dataset") + 1] = str(data)
    results = distill.main(args)
    assert results["metrics"] == {}  # nothing to measure on: a card without results
    card = ModelCard.load(tmp_path / "pushed" / "README.md")
    assert "model-index" not in card.data.to_dict() and "## Results" not in card.text
    # The Trainer creates the repository for its checkpoint pushes (--hub_strategy every_save, the
    # default), but no checkpoint was saved; then the student and its card go up.
    assert [name for name, _ in fake_hub] == ["create_repo", "create_repo", "upload_folder", "upload_file"]
    assert "model.safetensors" in fake_hub[2][1]["files"]
