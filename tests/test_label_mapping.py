"""Many-to-one label mapping: a dataset class's probability is the sum of its teacher classes'."""

import logging

import pytest
import torch

from hf_cakd.backbones import staged_view
from hf_cakd.errors import UsageError
from hf_cakd.label_mapping import GroupedClassifier, LabelMappingError, map_labels, restrict_classifier
from hf_cakd.model_specs import load_classifier
from tiny_models import TINY_MODELS, build

TEACHER_LABELS = [
    "beagle",
    "tabby, tabby cat",
    "airliner",
    "pug, pug-dog",
    "Persian_cat",
    "sports car",
    "Siamese cat",
    "golden retriever",
    "tench",
    "goldfish",
    "convertible",
    "warplane",
]
DATASET = {0: "airplane", 1: "automobile", 2: "cat", 3: "dog", 4: "fish"}
# airplane: one class, by a name that differs; automobile: two; cat: three (one by a synonym);
# dog: three; fish: two.
MAPPING = {
    "airplane": "airliner",
    "automobile": ["sports car", "convertible"],
    "cat": ["tabby cat", "persian cat", "siamese_cat"],
    "dog": ["beagle", "pug", "golden retriever"],
    "fish": ["tench", "goldfish"],
}
EXPECTED = {0: 2, 1: (5, 10), 2: (1, 4, 6), 3: (0, 3, 7), 4: (8, 9)}
IMAGE = torch.randn(3, 3, 32, 32)
# Every transformers-shaped classifier with one classification head (the bare timm Mixer and
# ResMLP have no config; distilled DeiT averages two heads, tested below).
SINGLE_HEAD = [name for name in TINY_MODELS if "mixer" not in name and "resmlp" not in name and "distilled" not in name]


def teacher(name: str = "hf-vit"):
    model = build(name, num_labels=len(TEACHER_LABELS))
    model.config.update({"id2label": dict(enumerate(TEACHER_LABELS)), "label2id": {n: i for i, n in enumerate(TEACHER_LABELS)}})
    return model


def summed_probabilities(logits: torch.Tensor, groups: dict) -> torch.Tensor:
    """The hand computation: each dataset class sums its teacher classes' probabilities; renormalise."""
    probabilities = logits.softmax(-1)
    summed = torch.stack(
        [probabilities[:, [g] if isinstance(g, int) else list(g)].sum(-1) for _, g in sorted(groups.items())], -1
    )
    return summed / summed.sum(-1, keepdim=True)


def test_map_labels_returns_ids_and_groups():
    assert map_labels(dict(enumerate(TEACHER_LABELS)), DATASET, MAPPING) == EXPECTED


@pytest.mark.parametrize("name", SINGLE_HEAD)
def test_softmax_of_grouped_logits_is_the_summed_probabilities(name):
    model = teacher(name)
    original = model(IMAGE).logits
    mapped = restrict_classifier(model, map_labels(model.config.id2label, DATASET, MAPPING), DATASET)
    logits = mapped(IMAGE).logits
    assert logits.shape == (3, 5)
    torch.testing.assert_close(logits.softmax(-1), summed_probabilities(original, EXPECTED))
    # The single-class group keeps its logit exactly; a group's logit is logsumexp of its logits.
    torch.testing.assert_close(logits[:, 0], original[:, 2])
    torch.testing.assert_close(logits[:, 3], original[:, [0, 3, 7]].logsumexp(-1))
    # Replaced in the model: a staged view built afterwards has the grouped head.
    torch.testing.assert_close(staged_view(mapped)(IMAGE).logits, logits)
    assert sum(isinstance(m, GroupedClassifier) for m in mapped.modules()) == 1
    assert mapped.config.num_labels == 5 and mapped.config.id2label[3] == "dog" and mapped.config.label2id["fish"] == 4
    if hasattr(mapped, "timm_model"):
        assert mapped.timm_model.num_classes == 5


def test_one_class_per_group_keeps_the_exact_row_selection():
    model = teacher("hf-resnet")
    original = model(IMAGE).logits
    one_each = {"automobile": ["sports car"], "cat": "tabby", "dog": ["beagle", "beagle"], "fish": "tench"}
    mapping = map_labels(model.config.id2label, DATASET, {**one_each, "airplane": "airliner"})
    assert mapping == {0: 2, 1: 5, 2: 1, 3: 0, 4: 8}
    mapped = restrict_classifier(model, mapping, DATASET)
    assert not any(isinstance(m, GroupedClassifier) for m in mapped.modules())
    assert type(mapped.classifier[-1]) is torch.nn.Linear and mapped.classifier[-1].out_features == 5
    torch.testing.assert_close(mapped(IMAGE).logits, original[:, [2, 5, 1, 0, 8]])


@pytest.mark.parametrize("name", ["hf-deit-distilled", "timm-deit-distilled"])
def test_two_head_models_average_each_heads_grouped_logits(name):
    model = teacher(name)
    mapped = restrict_classifier(model, EXPECTED, DATASET)
    assert sum(isinstance(m, GroupedClassifier) for m in mapped.modules()) == 2
    logits = mapped(IMAGE).logits
    assert logits.shape == (3, 5)
    torch.testing.assert_close(staged_view(mapped)(IMAGE).logits, logits)


def test_grouped_mapping_through_load_classifier(tmp_path):
    model = teacher("timm-vit")
    original = model(IMAGE).logits
    model.save_pretrained(tmp_path / "teacher")
    mapped = load_classifier(str(tmp_path / "teacher"), DATASET, role="teacher", label_mapping=MAPPING).eval()
    torch.testing.assert_close(mapped(IMAGE).logits.softmax(-1), summed_probabilities(original, EXPECTED))


def test_a_teacher_class_in_two_groups_is_allowed_with_a_warning(caplog):
    model = teacher("hf-resnet")
    original = model(IMAGE).logits
    mapping = {**MAPPING, "airplane": ["airliner", "warplane"], "fish": ["tench", "warplane"]}
    with caplog.at_level(logging.WARNING, logger="hf_cakd.label_mapping"):
        ids = map_labels(model.config.id2label, DATASET, mapping)
    assert "'warplane' counts towards several dataset classes: ['airplane', 'fish']" in caplog.text
    logits = restrict_classifier(model, ids, DATASET)(IMAGE).logits
    torch.testing.assert_close(logits[:, 4], original[:, [8, 11]].logsumexp(-1))


def test_unknown_teacher_label_names_it_the_dataset_label_and_the_fix():
    with pytest.raises(LabelMappingError) as err:
        map_labels(dict(enumerate(TEACHER_LABELS)), DATASET, {**MAPPING, "dog": ["beagle", "pugg"]})
    message = str(err.value)
    assert "--teacher_label_mapping names teacher labels the checkpoint does not have: 'pugg' (for 'dog')" in message
    assert "Correct 'pugg' (did you mean 'pug' or 'pug-dog'?)" in message and "remove it from the list for 'dog'" in message


def test_unknown_dataset_label_in_the_mapping_is_named():
    with pytest.raises(LabelMappingError) as err:
        map_labels(dict(enumerate(TEACHER_LABELS)), DATASET, {**MAPPING, "dgo": ["beagle"]})
    assert "maps labels the dataset does not have: 'dgo'. Correct 'dgo' (did you mean 'dog'?)" in str(err.value)
    assert "'airplane', 'automobile', 'cat', 'dog', 'fish'" in str(err.value)


def test_unmapped_dataset_label_suggests_a_list():
    with pytest.raises(LabelMappingError) as err:
        map_labels(dict(enumerate(TEACHER_LABELS)), DATASET, {"automobile": "sports car"})
    message = str(err.value)
    assert "No checkpoint label matches the dataset labels ['airplane', 'cat', 'dog', 'fish']" in message
    assert '\'{"airplane": ["<checkpoint label>", "<checkpoint label>"]}\'' in message


@pytest.mark.parametrize("value", [[], 3, ["beagle", 3], {"beagle": 1}])
def test_malformed_mapping_values_are_usage_errors(value):
    with pytest.raises(UsageError, match=r"^--teacher_label_mapping: the value for 'dog' must be a teacher label"):
        map_labels(dict(enumerate(TEACHER_LABELS)), DATASET, {**MAPPING, "dog": value})


def test_a_whole_label_wins_over_another_classs_synonym():
    # ImageNet: 82 "ruffed grouse, partridge, Bonasa umbellus", 86 "partridge".
    checkpoint = {0: "ruffed grouse, partridge, Bonasa umbellus", 1: "partridge", 2: "quail"}
    assert map_labels(checkpoint, {0: "bird"}, {"bird": ["ruffed grouse", "partridge", "quail"]}) == {0: (0, 1, 2)}
    assert map_labels(checkpoint, {0: "partridge", 1: "grouse"}, {"grouse": "Bonasa umbellus"}) == {0: 1, 1: 0}


@pytest.mark.parametrize("method", ["kd", "ofa", "fbt"])
def test_a_grouped_teacher_distils(method):
    from hf_cakd.modeling_distillation import DistillationModel

    grouped = restrict_classifier(teacher("hf-vit"), EXPECTED, DATASET).eval().requires_grad_(False)
    student = build("hf-resnet", num_labels=5).train()
    model = DistillationModel.build(student, grouped, method, None, 32, 32).train()
    with torch.no_grad():
        teacher_outputs = model.teacher_view(IMAGE)
    torch.testing.assert_close(teacher_outputs.logits, grouped(IMAGE).logits)
    outputs = model(IMAGE, labels=torch.tensor([0, 3, 4]), teacher_outputs=teacher_outputs)
    outputs["loss"].backward()
    assert torch.isfinite(outputs["loss"])
