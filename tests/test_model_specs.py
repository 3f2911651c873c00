import json
import os
import re
import shutil

import pytest
import torch
from transformers import ResNetConfig, TimmWrapperForImageClassification
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as transformers_logging

from hf_cakd.errors import InputError, UsageError
from hf_cakd.model_specs import LabelMismatchError, load_classifier, load_image_processor
from tiny_models import build

CIFAR_LABELS = dict(enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]))


@pytest.fixture
def saved_resnet(tmp_path):
    model = build("hf-resnet", num_labels=10)
    model.save_pretrained(tmp_path / "resnet")
    return str(tmp_path / "resnet"), model


def test_local_directory_round_trip_adopts_dataset_names_for_generic_labels(saved_resnet):
    path, original = saved_resnet
    model = load_classifier(path, CIFAR_LABELS).eval()
    assert model.config.id2label[3] == "cat" and model.config.label2id["truck"] == 9
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x).logits, original(x).logits)


def test_label_mismatch_stops_with_the_choices(saved_resnet):
    path, _ = saved_resnet
    five = {i: f"class{i}" for i in range(5)}
    with pytest.raises(LabelMismatchError) as err:
        load_classifier(path, five)
    message = str(err.value)
    assert "10 labels" in message and "5 labels" in message
    assert "--method none" in message and "--ignore_mismatched_sizes" in message


@pytest.mark.parametrize(
    "role, offered, not_offered",
    [
        ("teacher", "--teacher_label_mapping by_name", "randomly initialised"),
        ("student", "Pass --ignore_mismatched_sizes", "--teacher_label_mapping"),
    ],
)
def test_label_mismatch_offers_only_the_fixes_of_the_models_role(saved_resnet, role, offered, not_offered):
    # The teacher is never loaded with a new head, and the label mapping only reaches the teacher.
    with pytest.raises(LabelMismatchError) as err:
        load_classifier(saved_resnet[0], {i: f"class{i}" for i in range(5)}, role=role)
    assert offered in str(err.value) and not_offered not in str(err.value)


def test_replace_head_gives_the_dataset_label_space(saved_resnet):
    path, original = saved_resnet
    five = {i: f"class{i}" for i in range(5)}
    with CaptureLogger(transformers_logging.get_logger("transformers.configuration_utils")) as config_log:
        model = load_classifier(path, five, replace_head=True)
    assert "incompatible" not in config_log.out  # no "You passed `num_labels=5` ... map of length `10`"
    assert model.config.num_labels == 5 and model.classifier[-1].out_features == 5
    # The backbone keeps its trained weights; only the head is new.
    torch.testing.assert_close(
        model.resnet.embedder.embedder.convolution.weight, original.resnet.embedder.embedder.convolution.weight
    )


def test_timm_spec_builds_a_transformers_wrapped_timm_model():
    model = load_classifier("timm:resnet18", CIFAR_LABELS, model_args={"layers": [1, 1, 1, 1]})
    assert isinstance(model, TimmWrapperForImageClassification)
    assert model.config.id2label[0] == "airplane"
    assert model.timm_model.num_classes == 10 and len(model.timm_model.layer1) == 1


def test_timm_spec_from_scratch_keeps_timm_initialisation():
    """transformers' generic init would redraw the patch embedding from N(0, 0.02) and reset zero-init norms."""
    args = {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 1, "num_heads": 3}
    vit = load_classifier("timm:vit_tiny_patch16_224", CIFAR_LABELS, model_args=args).timm_model
    assert vit.patch_embed.proj.weight.std() > 0.06  # PyTorch's conv default, 1/sqrt(3 * 48) = 0.083
    resnet = load_classifier("timm:resnet18", CIFAR_LABELS, model_args={"layers": [1, 1, 1, 1]}).timm_model
    assert resnet.layer1[0].bn2.weight.abs().max() == 0  # timm's zero_init_last


def test_config_json_spec_builds_from_scratch(tmp_path):
    path = tmp_path / "student.json"
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], layer_type="basic")
    path.write_text(json.dumps(config.to_dict()))
    model = load_classifier(str(path), CIFAR_LABELS)
    assert model.config.num_labels == 10 and model.config.hidden_sizes == [8, 8, 8, 8]
    assert load_image_processor(str(path)) is None


def test_model_args_are_refused_for_non_timm_specs(saved_resnet):
    with pytest.raises(UsageError, match=r"^--teacher_model_args only apply to 'timm:<architecture>' specs"):
        load_classifier(saved_resnet[0], CIFAR_LABELS, role="teacher", model_args={"depth": 2})


def test_label_mapping_by_name_keeps_the_matching_classifier_rows(tmp_path):
    # A "bigger" checkpoint: 12 classes, the dataset's 10 among them in another order, with synonyms.
    big_labels = ["truck", "ship, boat", "Horse", "frog", "dog", "deer", "cat", "bird", "automobile", "airplane", "x", "y"]
    model = build("hf-resnet", num_labels=12)
    model.config.id2label = dict(enumerate(big_labels))
    model.config.label2id = {n: i for i, n in enumerate(big_labels)}
    model.save_pretrained(tmp_path / "big")
    original = model.eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(LabelMismatchError, match="--teacher_label_mapping"):
        load_classifier(str(tmp_path / "big"), CIFAR_LABELS)
    mapped = load_classifier(str(tmp_path / "big"), CIFAR_LABELS, label_mapping="by_name").eval()
    assert mapped.config.num_labels == 10 and mapped.config.id2label[3] == "cat"
    # Dataset class i gets exactly the logit of the checkpoint class of the same name.
    expected = original(x).logits[:, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    torch.testing.assert_close(mapped(x).logits, expected)


def test_explicit_label_mapping_and_missing_label_error(tmp_path):
    labels = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    model = build("hf-resnet", num_labels=10)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {n: i for i, n in enumerate(labels)}
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="airplane") as err:
        load_classifier(str(tmp_path / "m"), CIFAR_LABELS, label_mapping="by_name")
    assert "--teacher_label_mapping" in str(err.value)
    mapped = load_classifier(
        str(tmp_path / "m"), CIFAR_LABELS, label_mapping={"airplane": "plane", "automobile": "car"}
    )
    assert mapped.config.id2label[0] == "airplane" and mapped.classifier[-1].out_features == 10


# Files that cannot be loaded: the flag, the file and the fix


def truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])


def edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    config = json.loads(open(path).read())
    config.update(changes)
    with open(path, "w") as file:
        file.write(json.dumps(config))


def test_truncated_weights_name_the_flag_the_file_and_the_fix(saved_resnet):
    path, _ = saved_resnet
    truncate(os.path.join(path, "model.safetensors"))
    with pytest.raises(InputError) as err:
        load_classifier(path, CIFAR_LABELS, role="teacher")
    message = str(err.value)
    assert message.startswith(f"--teacher {path!r}: {os.path.join(path, 'model.safetensors')} is truncated or corrupt")
    assert "incomplete metadata, file not fully covered" in message
    assert message.endswith(f"Save the model again with save_pretrained, or copy {path} again from where it came from.")


def test_truncated_weights_in_the_hub_cache_say_which_folder_to_delete(saved_resnet, tmp_path):
    path, _ = saved_resnet
    repo = tmp_path / "hub" / "models--someone--tiny-resnet"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(path, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    assert load_classifier("someone/tiny-resnet", CIFAR_LABELS, cache_dir=str(tmp_path / "hub")) is not None
    truncate(snapshot / "model.safetensors")
    with pytest.raises(InputError) as err:
        load_classifier("someone/tiny-resnet", CIFAR_LABELS, role="student", cache_dir=str(tmp_path / "hub"))
    message = str(err.value)
    assert message.startswith(f"--student 'someone/tiny-resnet': {snapshot / 'model.safetensors'} is truncated")
    assert message.endswith(f"Delete its cached copy {repo} and run again to download it anew.")


def test_config_that_does_not_match_the_weights(saved_resnet):
    path, _ = saved_resnet
    edit_config(path, hidden_sizes=[8, 16, 24, 48])
    with pytest.raises(InputError) as err:
        load_classifier(path, CIFAR_LABELS, role="student")
    message = str(err.value)
    config, weights = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
    assert message.startswith(f"--student {path!r}: the weights in {weights} do not have the shapes {config} describes")
    assert "Put back the config saved with these weights" in message


def test_unknown_model_type_names_it_and_the_config(saved_resnet):
    path, _ = saved_resnet
    edit_config(path, model_type="resnet_from_the_future")
    with pytest.raises(InputError) as err:
        load_classifier(path, CIFAR_LABELS)
    config = os.path.join(path, "config.json")
    assert str(err.value).startswith(
        f"The model {path!r}: {config} has model_type 'resnet_from_the_future', which transformers"
    )
    assert "pip install -U transformers" in str(err.value)
    with pytest.raises(InputError, match=rf"^--student {re.escape(repr(config))}: {re.escape(config)} has model_type"):
        load_classifier(config, CIFAR_LABELS, role="student")  # a config alone: a model built from scratch


def test_unknown_timm_architecture_and_missing_folder(tmp_path):
    message = r"^--student 'timm:resnet_from_the_future': timm .* has no architecture 'resnet_from_the_future'"
    with pytest.raises(InputError, match=message):
        load_classifier("timm:resnet_from_the_future", CIFAR_LABELS, role="student")
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(InputError, match=rf"^--teacher '{missing}': there is no such file or folder\."):
        load_classifier(missing, CIFAR_LABELS, role="teacher")
    # A Hub id that is not cached offline: tests/test_hub_errors.py has the Hub's cases.
    with pytest.raises(InputError, match=r"^--teacher 'someone/not-cached' is not in the local cache .*hf download"):
        load_classifier("someone/not-cached", CIFAR_LABELS, role="teacher", cache_dir=str(tmp_path / "hub"))


@pytest.mark.parametrize("contents, holds", [([], "it is empty"), (["model.safetensors"], "it holds model.safetensors")])
def test_a_folder_without_config_json_is_named_as_such(tmp_path, contents, holds):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in contents:
        (folder / name).write_bytes(b"")
    with pytest.raises(InputError, match=rf"^--teacher '{folder}': the folder has no config.json \({holds}\)\. Pass a folder "):
        load_classifier(str(folder), CIFAR_LABELS, role="teacher")
