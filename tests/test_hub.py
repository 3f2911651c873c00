"""The student's card, its push (at the HfApi boundary) and its timm-loadable folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx2
import pytest
import requests
import timm
import torch
from huggingface_hub import HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForImageClassification, pipeline

import hf_cakd.run.hub
from hf_cakd.data.transforms import image_processor_for
from hf_cakd.run.hub import CardInputs, PushError, default_license, make_timm_loadable, push_student, student_model_card
from tiny_models import IMAGE_SIZE, hf_resnet, timm_resnet

LOG_HISTORY = [
    {"loss": 2.3, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 5},
    {"eval_loss": 2.0, "eval_top1": 0.3, "eval_top5": 0.8, "eval_runtime": 1.0, "epoch": 1.0, "step": 10},
    {"train_runtime": 3.0, "train_loss": 2.2, "epoch": 1.0, "step": 10, "total_flos": 0},
]


def card_inputs(**overrides) -> CardInputs:
    values = dict(
        model_name="run",
        student="microsoft/resnet-18",
        teacher="google/vit-base-patch16-224",
        student_family="cnn",
        teacher_family="attention",
        method="kd",
        method_title="Hinton knowledge distillation",
        method_options={"kd_temperature": 2.0},
        dataset="uoft-cs/cifar10",
        eval_split="test",
        metrics={"teacher": {"top1": 0.9, "top5": 1.0}, "student": {"top1": 0.61234, "top5": 0.9}},
        global_steps=10,
        epochs_seen=1.28,
        per_device_batch_size=8,
        num_processes=2,
        gradient_accumulation_steps=4,
        learning_rate=1e-3,
        seed=7,
        license="apache-2.0",
        log_history=LOG_HISTORY,
        input_resolutions={"student": (32, 32), "teacher": (224, 224)},
    )
    return CardInputs(**{**values, **overrides})


# ---- the card ----


def test_card_states_the_training_the_teacher_and_distinct_top1_top5_results():
    card = student_model_card(card_inputs(), repo_id="user/repo")
    metadata = card.data.to_dict()
    assert metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == "microsoft/resnet-18" and metadata["datasets"] == ["uoft-cs/cifar10"]
    assert metadata["teacher_model"] == "google/vit-base-patch16-224"
    top1, top5 = card.data.eval_results
    assert (top1.metric_type, top1.metric_value, top1.dataset_split) == ("accuracy", 0.6123, "test")
    assert (top5.metric_type, top5.metric_value) == ("top_5_accuracy", 0.9)
    text = card.text
    assert "distilled from the teacher **google/vit-base-patch16-224**" in text
    assert "| student | 61.23 | 90.00 |" in text and "| teacher | 90.00 | 100.00 |" in text
    assert "- steps trained: 10\n- epochs seen: 1.28\n" in text
    assert "- effective batch size: 64 (8 per device x 2 processes x 4 accumulation steps)" in text
    assert "- seed: 7" in text and "student input resolution: 32x32" in text
    # Trainer's own training-results table and framework versions.
    assert "| Training Loss | Epoch | Step | Validation Loss | Top1 | Top5 |" in text
    for name in ("transformers", "torch", "datasets", "timm", "accelerate", "hf_cakd"):
        assert f"\n- {name} " in text
    assert 'pipeline("image-classification", model="user/repo")' in text
    assert "github.com" not in text and "arxiv" not in text.lower() and "License: not set" not in text
    # What the card says is what ModelCard reads back.
    assert ModelCard(str(card)).data.to_dict() == metadata


def test_card_lists_the_options_that_differ_from_the_defaults_marks_experimental_ones_and_links_all():
    link = "(the full configuration: `method_config` in [results.json](results.json))"
    text = student_model_card(card_inputs()).text
    assert f"- kd_temperature: `2.0`\n- other options: `kd`'s defaults {link}\n" in text
    text = student_model_card(card_inputs(method_options={})).text
    assert f"- options: `kd`'s defaults {link}\n" in text and "kd_temperature" not in text
    fbt = card_inputs(
        method="fbt",
        method_options={"fbt_transfer_paths": ["teacher_student", "assistant_student"], "fbt_deep_supervision": [1, 2]},
        experimental_options=("fbt_deep_supervision", "fbt_infonce_mask_same_label"),
    )
    text = student_model_card(fbt).text
    assert "- fbt_transfer_paths: `teacher_student,assistant_student`\n" in text  # as the flag takes it
    assert "- fbt_deep_supervision: `1,2` (experimental)\n" in text and "fbt_infonce_mask_same_label" not in text
    by_pair = card_inputs(method="fbt", method_options={}, pair_options={"fbt_deep_supervision": [], "fbt_bridge_downsample": 2})
    text = student_model_card(by_pair).text
    auto = "(`auto`: follows the pair)"
    assert f"- fbt_deep_supervision: `''` {auto}\n- fbt_bridge_downsample: `2` {auto}\n- options: `fbt`'s defaults" in text


def test_card_says_when_auto_chose_the_method_for_the_students_family():
    chosen = "- method: Hinton knowledge distillation (`kd`), chosen by `--method auto` (follows the pair): the best measured method for cnn students"
    assert chosen in student_model_card(card_inputs(method_chosen_by_auto=True)).text
    assert "--method auto" not in student_model_card(card_inputs()).text


def test_card_names_local_paths_by_their_base_name_only(tmp_path):
    teacher, student, data = tmp_path / "my-teacher", tmp_path / "my-student", tmp_path / "my-data"
    for folder in (teacher, student, data):
        folder.mkdir()
    card = student_model_card(card_inputs(teacher=str(teacher), student=str(student), dataset=str(data)))
    metadata = card.data.to_dict()
    assert str(tmp_path) not in str(card)
    assert "base_model" not in metadata and "datasets" not in metadata
    assert metadata["teacher_model"] == "my-teacher" and card.data.eval_results[0].dataset_name == "my-data"
    assert "**my-student** student" in card.text and "trained on\n**my-data**" in card.text


def test_a_timm_student_is_no_base_model():
    card = student_model_card(card_inputs(student="timm:resnet18"))
    assert "base_model" not in card.data.to_dict() and "`timm:resnet18`" in card.text


@pytest.mark.parametrize(
    "method, options, cited",
    [
        ("fbt", {}, ["2410.12342", "2310.19444"]),
        ("fbt", {"fbt_feature_loss": "rsd"}, ["2410.12342", "2310.19444", "2507.21844"]),
        ("ofa", {}, ["2310.19444"]),
        ("rsd", {}, ["2507.21844"]),
        ("kd", {}, []),
    ],
)
def test_card_cites_the_papers_of_what_ran(method, options, cited):
    text = student_model_card(card_inputs(method=method, method_options=options)).text
    for arxiv in ("2410.12342", "2310.19444", "2507.21844"):
        assert (f"https://arxiv.org/abs/{arxiv}" in text) == (arxiv in cited)
    assert text.count("@inproceedings{") == len(cited)
    if method == "rsd":
        assert "Zhang, Weijia and Liu, Yuehao and Ran, Wu and Ma, Chao" in text
    if method == "fbt":
        assert "Li, Guopeng and Wang, Qiang and Yan, Ke and Ding, Shouhong and Gao, Yuan and Xia, Gui-Song" in text
        assert "International Conference on Computer Vision (ICCV)},\n  year={2025}" in text


def test_card_without_an_eval_split_has_no_results_but_the_training():
    card = student_model_card(card_inputs(eval_split=None, metrics={}, log_history=[{"loss": 2.3, "epoch": 0.5, "step": 5}]))
    assert "model-index" not in str(card) and card.data.eval_results is None
    assert "## Results" not in card.text and "top-1" not in card.text
    assert "- steps trained: 10" in card.text
    assert "| Training Loss | Epoch | Step |" in card.text and "| 2.3 " in card.text


def test_card_with_license_other_asks_to_set_it_and_the_baseline_has_no_teacher():
    card = student_model_card(card_inputs(license="other", teacher=None, teacher_family=None, method="none"))
    assert card.data.license == "other" and "License: not set." in card.text
    assert "teacher_model" not in card.data.to_dict() and "- teacher:" not in card.text
    assert "trained on the labels of **uoft-cs/cifar10**" in card.text


def write_card(folder: Path, **metadata) -> str:
    folder.mkdir()
    ModelCard.from_template(ModelCardData(**metadata)).save(folder / "README.md")
    return str(folder)


def test_default_license_prefers_the_teacher_then_the_student_else_other(tmp_path, monkeypatch):
    mit = write_card(tmp_path / "mit", license="mit")
    apache = write_card(tmp_path / "apache", license="apache-2.0")
    unlicensed = write_card(tmp_path / "unlicensed", tags=["x"])
    assert default_license(mit, apache) == ("mit", "teacher")
    assert default_license(unlicensed, apache) == ("apache-2.0", "student")
    assert default_license(str(tmp_path / "no-card"), "timm:resnet18") == ("other", "none")
    # A Hub id offline (HF_HUB_OFFLINE=1 in tests) fails soft ...
    assert default_license("google/vit-base-patch16-224", None) == ("other", "none")
    # ... and online it is the Hub card's license.
    hub_card = write_card(tmp_path / "hub-card", license="bsd")
    monkeypatch.setattr(hf_cakd.run.hub, "hf_hub_download", lambda repo_id, filename: str(Path(hub_card) / filename))
    assert default_license("google/vit-base-patch16-224", apache) == ("bsd", "teacher")


def test_a_default_student_has_no_card_to_read(caplog):
    """hf_cakd:default-* students are built from scratch: no Hub lookup, no "No license read" line."""
    with caplog.at_level("INFO", logger="hf_cakd.run.hub"):
        assert default_license(None, "hf_cakd:default-resnet18") == ("other", "none")
    assert "No license read" not in caplog.text


# ---- the push ----


def http_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://huggingface.co/api/models/user/repo/commit/main")
    return HfHubHTTPError(f"{status} error", response=httpx2.Response(status, request=request))


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi's upload methods replaced by recorders; ``failures`` lists errors the next uploads raise."""
    hub = {"calls": [], "failures": []}

    def record(name, **kwargs):
        if hub["failures"]:
            raise hub["failures"].pop(0)
        hub["calls"].append((name, kwargs))

    def upload_folder(self, *, folder_path, allow_patterns=None, ignore_patterns=None, path_in_repo=None, **kwargs):
        from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
        from huggingface_hub.utils import filter_repo_objects

        root = Path(folder_path)
        local = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        ignore = list(ignore_patterns or []) + DEFAULT_IGNORE_PATTERNS
        files = list(filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore))
        prefix = f"{path_in_repo}/" if path_in_repo else ""
        record("upload_folder", files=[prefix + f for f in files], **kwargs)

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: record("create_repo", repo_id=repo_id, **kw))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(
        HfApi, "upload_file", lambda self, *, path_or_fileobj, **kw: record("upload_file", content=path_or_fileobj, **kw)
    )
    monkeypatch.setattr(HfApi, "create_commit", lambda *a, **kw: pytest.fail("uploads go through upload_folder/file"))
    return hub


@pytest.fixture
def output_dir(tmp_path):
    """A finished run's folder: the student, its card, a checkpoint and the distillation parts."""
    root = tmp_path / "run"
    for name in [
        "config.json", "model.safetensors", "preprocessor_config.json", "results.json", "training_args.bin",
        "distillation_method.safetensors", "distillation_config.json", "assistant/config.json",
        "assistant/model.safetensors", "checkpoint-2/model.safetensors", "runs/events.out",
    ]:  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / "README.md").write_text("---\nlicense: mit\n---\n# run\n")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


STUDENT_FILES = ["config.json", "model.safetensors", "preprocessor_config.json", "results.json"]


def test_push_uploads_the_student_at_the_top_then_the_folders_card_and_keeps_distillation_parts_local(
    fake_hub, output_dir
):
    before = snapshot(output_dir)
    push_student(output_dir, "user/repo", private=True)
    names = [name for name, _ in fake_hub["calls"]]
    assert names == ["create_repo", "upload_folder", "upload_file"]
    (_, repo), (_, folder), (_, card) = fake_hub["calls"]
    assert repo == {"repo_id": "user/repo", "private": True, "exist_ok": True}
    assert sorted(folder["files"]) == STUDENT_FILES
    assert card["path_in_repo"] == "README.md" and card["content"] == (output_dir / "README.md").read_bytes()
    assert snapshot(output_dir) == before


def test_pushing_a_folder_later_points_its_cards_usage_snippets_at_the_repository(fake_hub, output_dir):
    """distill renders the snippets for --hub_model_id, else the folder's name; hf-cakd push names the repository."""
    (output_dir / "README.md").write_text(str(student_model_card(card_inputs(model_name="run"))))
    push_student(output_dir, "user/repo")
    pushed = fake_hub["calls"][-1][1]["content"].decode()
    assert 'pipeline("image-classification", model="user/repo")' in pushed
    assert pushed.count('from_pretrained("user/repo")') == 2 and '"run"' not in pushed
    assert ModelCard(pushed).data.to_dict() == ModelCard.load(output_dir / "README.md").data.to_dict()


def test_card_lists_the_recipe_flags_that_were_set():
    recipe = {"auto_augment": "rand-m9-mstd0.5-inc1", "mixup_alpha": 0.8, "label_smoothing_factor": 0.1}
    text = student_model_card(card_inputs(recipe=recipe)).text
    assert (
        "- augmentation and targets: `--auto_augment rand-m9-mstd0.5-inc1`, `--mixup_alpha 0.8`, "
        "`--label_smoothing_factor 0.1`\n" in text
    )
    assert "augmentation and targets" not in student_model_card(card_inputs()).text


def test_push_with_distillation_parts_puts_them_under_distillation(fake_hub, output_dir):
    card = ModelCard("---\nlicense: mit\n---\n# given card\n")
    push_student(output_dir, "user/repo", card, include_distillation_parts=True)
    folders = [kw["files"] for name, kw in fake_hub["calls"] if name == "upload_folder"]
    assert sorted(folders[0]) == STUDENT_FILES
    assert sorted(folders[1]) == [
        "distillation/assistant/config.json", "distillation/assistant/model.safetensors",
        "distillation/distillation_config.json", "distillation/distillation_method.safetensors",
    ]  # fmt: skip
    assert fake_hub["calls"][-1][1]["content"] == str(card).encode()


def test_push_retries_transient_failures_with_exponential_backoff(fake_hub, output_dir):
    fake_hub["failures"] = [http_error(503), httpx2.ConnectError("reset"), requests.ConnectionError("reset")]
    sleeps = []
    push_student(output_dir, "user/repo", sleep=sleeps.append)
    assert sleeps == [2.0, 4.0, 8.0]
    assert [name for name, _ in fake_hub["calls"]] == ["create_repo", "upload_folder", "upload_file"]


def test_a_push_that_keeps_failing_says_the_folder_is_intact_and_how_to_push_it_later(fake_hub, output_dir):
    before = snapshot(output_dir)
    fake_hub["failures"] = [http_error(502)] * 10
    sleeps = []
    with pytest.raises(PushError) as raised:
        push_student(output_dir, "user/repo", attempts=3, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]
    message = str(raised.value)
    assert "complete and untouched" in message and f"hf-cakd push {output_dir} --repo_id user/repo" in message
    assert snapshot(output_dir) == before


def test_a_client_error_is_not_retried(fake_hub, output_dir):
    fake_hub["failures"] = [http_error(401)]
    sleeps = []
    with pytest.raises(PushError, match="hf-cakd push"):
        push_student(output_dir, "user/repo", sleep=sleeps.append)
    assert sleeps == [] and fake_hub["calls"] == []


# ---- timm students ----


def test_a_timm_student_folder_loads_in_timm_and_transformers_with_the_same_logits(tmp_path, monkeypatch):
    student = timm_resnet().eval()
    folder = tmp_path / "student"
    student.save_pretrained(folder)
    image_processor_for(student, image_size=IMAGE_SIZE).save_pretrained(folder)
    assert make_timm_loadable(folder) is True
    assert make_timm_loadable(folder) is True  # a second call changes nothing
    pixels = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        expected = student(pixels).logits
        from_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        torch.testing.assert_close(from_timm(pixels), expected)
        from_transformers = AutoModelForImageClassification.from_pretrained(folder).eval()
        torch.testing.assert_close(from_transformers(pixels).logits, expected)
        # hf-hub: reads the same two files from the Hub
        monkeypatch.setattr(
            timm.models._hub, "hf_hub_download", lambda repo_id, filename, **kw: str(folder / filename)
        )
        from_hub = timm.create_model("hf-hub:user/student", pretrained=True).eval()
        torch.testing.assert_close(from_hub(pixels), expected)
    # timm's data config is the preprocessing the student was trained with
    data_config = timm.data.resolve_data_config(model=from_timm)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert tuple(data_config["input_size"]) == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert list(data_config["mean"]) == processor["image_mean"] and list(data_config["std"]) == processor["image_std"]
    assert from_transformers.config.id2label == student.config.id2label
    classify = pipeline("image-classification", model=str(folder))
    assert len(classify(torch.rand(3, 40, 40).mul(255).byte().permute(1, 2, 0).numpy(), top_k=3)) == 3


def test_make_timm_loadable_leaves_other_students_alone(tmp_path):
    hf_resnet().save_pretrained(tmp_path)
    before = snapshot(tmp_path)
    assert make_timm_loadable(tmp_path) is False
    assert snapshot(tmp_path) == before


def test_card_names_the_rows_behind_its_numbers_how_the_student_started_and_its_limitations():
    counted = card_inputs(train_rows=45000, eval_rows=10000, train_split="train[:90%]")
    text = student_model_card(counted).text
    assert "## Results on uoft-cs/cifar10 (test split, 10,000 images)" in text
    assert "- trained on: 45,000 images of the train[:90%] split of uoft-cs/cifar10\n" in text
    assert "- student: `microsoft/resnet-18` (cnn), started from its trained weights\n" in text
    limitations = text[text.index("## Limitations") : text.index("## Distillation")]
    assert "measured on 10,000 images of the test split of uoft-cs/cifar10 only" in limitations
    assert "started from the trained weights of `microsoft/resnet-18`" in limitations
    assert "the teacher's errors and biases are passed on" in limitations and "near chance" not in limitations
    scratch = student_model_card(card_inputs(student="timm:resnet18", student_from_scratch=True, train_rows=500)).text
    assert "- student: `timm:resnet18` (cnn), built from scratch (random weights)\n" in scratch
    assert "started from scratch (random weights) and learned from 500 images of the train split" in scratch
    alone = student_model_card(card_inputs(teacher=None, teacher_family=None, method="none")).text
    assert "## Limitations" in alone and "teacher" not in alone[alone.index("## Limitations") :].split("##")[1]
