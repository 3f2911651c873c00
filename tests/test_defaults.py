"""What distill chooses when --student or --dataset is left out (the Hub is mocked at its boundary)."""

from types import SimpleNamespace

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from datasets import ClassLabel, Features, Image, Value
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import DatasetCardData
from huggingface_hub.errors import OfflineModeIsEnabled
from transformers import AutoImageProcessor, AutoModelForImageClassification, ResNetForImageClassification, pipeline
from transformers import ViTForImageClassification

import hf_cakd.run.hub
from hf_cakd.run import defaults
from hf_cakd.backbones import staged_view
from hf_cakd.run.defaults import (
    DEFAULT_CNN_STUDENT,
    DEFAULT_VIT_STUDENT,
    build_default_student,
    dataset_labels,
    default_dataset,
    default_dataset_warning,
    default_image_processor,
    default_student,
    vit_patch_size,
)
from hf_cakd.data.transforms import image_transforms, model_input_spec
from hf_cakd.errors import UsageError

CIFAR = dict(enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]))
IMAGENET = {i: f"class {i}" for i in range(1000)}


# ---- the student ----


@pytest.mark.parametrize("family", ["attention", "mlp"])
def test_attention_or_mlp_teacher_gets_a_resnet18_sized_cnn(family):
    model, description = default_student(family, 32, CIFAR)
    config = model.config
    assert isinstance(model, ResNetForImageClassification)
    assert (config.layer_type, config.depths, config.hidden_sizes) == ("basic", [2, 2, 2, 2], [64, 128, 256, 512])
    assert config.image_size == 32 and config._name_or_path == DEFAULT_CNN_STUDENT
    assert config.id2label == CIFAR and config.label2id["truck"] == 9 and config.num_labels == 10
    assert 11.0e6 < sum(p.numel() for p in model.parameters()) < 11.5e6
    view = staged_view(model)
    assert view.family == "cnn" and view.image_size == (32, 32)
    assert description.startswith("hf_cakd:default-resnet18: a ResNet-18-sized CNN") and "32 px" in description
    assert f"for the {family} teacher" in description and "\n" not in description


@pytest.mark.parametrize("image_size, patch, grid", [(32, 4, 8), (64, 4, 16), (224, 16, 14)])
def test_cnn_teacher_gets_a_deit_tiny_sized_vit_at_the_data_resolution(image_size, patch, grid):
    model, description = default_student("cnn", image_size, CIFAR)
    config = model.config
    assert isinstance(model, ViTForImageClassification)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        192, 12, 3, 768
    )
    assert (config.image_size, config.patch_size) == (image_size, patch)
    assert config._name_or_path == DEFAULT_VIT_STUDENT and config.id2label == CIFAR
    view = staged_view(model)
    assert view.family == "attention" and view.stage_infos[0].grid == (grid, grid)
    assert f"{patch} px patches, {grid}x{grid} grid" in description
    with torch.no_grad():
        assert model(torch.randn(1, 3, image_size, image_size)).logits.shape == (1, 10)


@pytest.mark.parametrize(
    "image_size, patch", [(384, 16), (224, 16), (128, 16), (127, 4), (96, 4), (32, 4), (28, 2), (16, 2), (8, 1), (5, 1)]
)
def test_vit_patch_size_keeps_a_grid_of_at_least_8x8(image_size, patch):
    assert vit_patch_size(image_size) == patch


def test_the_name_rebuilds_the_same_architecture():
    for family in ("cnn", "attention"):
        model, _ = default_student(family, 32, CIFAR)
        again = build_default_student(model.config._name_or_path, 32, CIFAR)
        assert again.config.to_dict() == model.config.to_dict()
        assert [(n, p.shape) for n, p in again.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]
    with pytest.raises(UsageError, match="no default student 'hf_cakd:default-vgg'"):
        build_default_student("hf_cakd:default-vgg", 32, CIFAR)
    with pytest.raises(ValueError, match="teacher_family must be one of"):
        default_student("transformer", 32, CIFAR)


def test_saved_default_student_and_processor_load_with_pipeline(tmp_path):
    model, _ = default_student("cnn", 32, CIFAR)
    model.save_pretrained(tmp_path / "student")
    processor = default_image_processor(32)
    processor.save_pretrained(tmp_path / "student")
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "student")
    assert loaded.config.image_size == 32 and loaded.config.patch_size == 4
    reloaded = AutoImageProcessor.from_pretrained(tmp_path / "student")
    assert (reloaded.size.height, reloaded.size.width) == (32, 32)
    assert list(reloaded.image_mean) == [0.485, 0.456, 0.406] and list(reloaded.image_std) == [0.229, 0.224, 0.225]
    # hf_cakd's own transforms follow it: exactly 32 x 32, no crop.
    for saved in (processor, reloaded):
        spec = model_input_spec(loaded, saved)
        assert (spec.size, spec.resize) == ((32, 32), (32, 32))
        assert image_transforms(loaded, saved, train=False)(PIL.Image.new("RGB", (48, 40))).shape == (3, 32, 32)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    predictions = pipeline("image-classification", model=str(tmp_path / "student"), device="cpu")(image)
    assert predictions[0]["label"] in CIFAR.values()


# ---- dataset labels, without images ----


def fake_builder(monkeypatch, table: dict):
    """load_dataset_builder answering from ``table``: name -> Features, or an exception to raise."""
    calls = []

    def load_dataset_builder(path, name=None, **kwargs):
        calls.append((path, name))
        answer = table.get(path, DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub"))
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(info=SimpleNamespace(features=answer))

    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return calls


def fake_dataset_cards(monkeypatch, cards: dict):
    """HfApi().dataset_info(name).card_data answering from ``cards``; other names are not found."""

    class FakeApi:
        def dataset_info(self, repo_id, **kwargs):
            if repo_id not in cards:
                raise DatasetNotFoundError(f"{repo_id} not found")
            return SimpleNamespace(card_data=cards[repo_id])

    monkeypatch.setattr(defaults, "HfApi", FakeApi)


def image_features(**labels):
    return Features({"img": Image(), **labels})


def test_dataset_labels_from_the_builder_features(monkeypatch):
    calls = fake_builder(
        monkeypatch,
        {
            "uoft-cs/cifar10": image_features(label=ClassLabel(names=list(CIFAR.values()))),
            "uoft-cs/cifar100": image_features(
                fine_label=ClassLabel(num_classes=100), coarse_label=ClassLabel(num_classes=20)
            ),
            "someone/int-labels": image_features(label=Value("int64")),
            "someone/no-metadata": None,
        },
    )
    fake_dataset_cards(monkeypatch, {})
    assert dataset_labels("uoft-cs/cifar10") == CIFAR
    assert calls == [("uoft-cs/cifar10", None)]
    assert len(dataset_labels("uoft-cs/cifar100", label_column="coarse_label")) == 20
    assert dataset_labels("uoft-cs/cifar100") is None  # two ClassLabels, neither named label: the loader asks
    assert dataset_labels("someone/int-labels") is None
    assert dataset_labels("someone/no-metadata") is None
    assert dataset_labels("someone/missing") is None


def test_dataset_labels_of_a_local_folder_are_left_to_the_loader(monkeypatch, tmp_path):
    calls = fake_builder(monkeypatch, {})
    assert dataset_labels(str(tmp_path)) is None and calls == []


IMAGENET_CARD = DatasetCardData(
    dataset_info={
        "config_name": "default",
        "features": [
            {"name": "image", "dtype": "image"},
            {"name": "label", "dtype": {"class_label": {"names": {str(i): n for i, n in IMAGENET.items()}}}},
        ],
    }
)
GATED = DatasetNotFoundError("Dataset 'imagenet-1k' is a gated dataset on the Hub. Visit the dataset page to ask for access.")


def test_dataset_labels_of_a_gated_dataset_come_from_its_card(monkeypatch):
    fake_builder(monkeypatch, {"imagenet-1k": GATED})
    fake_dataset_cards(monkeypatch, {"imagenet-1k": IMAGENET_CARD})
    labels = dataset_labels("imagenet-1k")
    assert len(labels) == 1000 and labels[999] == "class 999"


# ---- the dataset ----


def fake_model_cards(monkeypatch, tmp_path, cards: dict):
    """The Hub's model cards as ``cards`` gives them (metadata as YAML text, or an error to raise)."""

    def download(repo_id, filename, **kwargs):
        answer = cards[repo_id]
        if isinstance(answer, Exception):
            raise answer
        readme = tmp_path / repo_id / filename
        readme.parent.mkdir(parents=True, exist_ok=True)
        readme.write_text(f"---\n{answer}\n---\n# card")
        return str(readme)

    monkeypatch.setattr(hf_cakd.run.hub, "hf_hub_download", download)


VIT_CARD = "license: apache-2.0\ntags:\n- vision\ndatasets:\n- imagenet-1k\n- imagenet-21k"


def test_headline_teacher_gets_imagenet_1k_from_its_card_without_downloading_images(monkeypatch, tmp_path):
    fake_model_cards(monkeypatch, tmp_path, {"google/vit-base-patch16-224": VIT_CARD})
    calls = fake_builder(monkeypatch, {"imagenet-1k": GATED})
    fake_dataset_cards(monkeypatch, {"imagenet-1k": IMAGENET_CARD})
    assert default_dataset("google/vit-base-patch16-224", 1000) == "imagenet-1k"
    assert calls == [("imagenet-1k", None)]
    warning = default_dataset_warning("imagenet-1k", "google/vit-base-patch16-224", 1000)
    assert "No --dataset given: training on imagenet-1k" in warning and "gated" in warning and "large" in warning


def test_the_first_dataset_with_the_teachers_label_count_wins(monkeypatch, tmp_path):
    card = "datasets:\n- big/one\n- missing/two\n- uoft-cs/cifar10\n- other/ten"
    fake_model_cards(monkeypatch, tmp_path, {"someone/teacher": card})
    fake_builder(
        monkeypatch,
        {
            "big/one": image_features(label=ClassLabel(num_classes=100)),
            "uoft-cs/cifar10": image_features(label=ClassLabel(names=list(CIFAR.values()))),
            "other/ten": image_features(label=ClassLabel(num_classes=10)),
        },
    )
    fake_dataset_cards(monkeypatch, {})
    assert default_dataset("someone/teacher", 10) == "uoft-cs/cifar10"


def test_a_local_teacher_folder_is_read_from_its_readme(monkeypatch, tmp_path):
    (tmp_path / "README.md").write_text("---\ndatasets: uoft-cs/cifar10\n---\n# my teacher\n")
    fake_builder(monkeypatch, {"uoft-cs/cifar10": image_features(label=ClassLabel(num_classes=10))})
    assert default_dataset(str(tmp_path), 10) == "uoft-cs/cifar10"


def test_no_matching_dataset_names_dataset_flag_and_what_was_found(monkeypatch, tmp_path):
    fake_model_cards(monkeypatch, tmp_path, {"someone/teacher": "datasets:\n- big/one\n- missing/two"})
    fake_builder(monkeypatch, {"big/one": image_features(label=ClassLabel(num_classes=100))})
    fake_dataset_cards(monkeypatch, {})
    with pytest.raises(UsageError) as err:
        default_dataset("someone/teacher", 10)
    message = str(err.value)
    assert message.startswith("No dataset in the model card of --teacher someone/teacher has its 10 labels")
    assert "big/one: 100 labels" in message and "missing/two: DatasetNotFoundError" in message
    assert message.endswith("pass --dataset.")


@pytest.mark.parametrize(
    "card, expected",
    [
        (
            OfflineModeIsEnabled("offline"),
            r"^Cannot read the model card of --teacher someone/teacher to choose a dataset \(offline\): pass --dataset\.$",
        ),
        ("license: mit", r"^The model card of --teacher someone/teacher names no dataset .*: pass --dataset\.$"),
    ],
)
def test_unreachable_hub_or_a_card_without_datasets(monkeypatch, tmp_path, card, expected):
    fake_model_cards(monkeypatch, tmp_path, {"someone/teacher": card})
    with pytest.raises(UsageError, match=expected):
        default_dataset("someone/teacher", 10)


def test_specs_without_a_card(tmp_path):
    with pytest.raises(UsageError, match=r"^--teacher timm:resnet18 has no model card .*pass --dataset"):
        default_dataset("timm:resnet18", 1000)
    with pytest.raises(UsageError, match=r"has no README.md \(model card\) .*pass --dataset"):
        default_dataset(str(tmp_path), 10)
