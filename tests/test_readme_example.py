"""The README's "Distil your own models" command runs as written, with the Hub mocked at its boundary.

google/vit-base-patch16-224 and microsoft/resnet-18 become tiny models with ImageNet-1k's 1,000
labels (their names as those checkpoints carry them), uoft-cs/cifar10 the embedded CIFAR-10 rows;
every other line of the pipeline, the many-to-one label mapping in examples/ included, is real.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import datasets
import pytest
import torch
from timm.data import ImageNetInfo
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTImageProcessor

from hf_cakd.cli import distill_main
from test_distill_script import fake_hub  # noqa: F401  (a fixture)
from tiny_models import hf_resnet, hf_vit

ROOT = Path(__file__).resolve().parents[1]
HUB_MODELS = {"google/vit-base-patch16-224": hf_vit, "microsoft/resnet-18": hf_resnet}


def readme_command() -> list[str]:
    """The flags of the README's first accelerate launch command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\naccelerate launch scripts/distill\.py(.*?)```", readme, re.S).group(1)
    return shlex.split(block.replace("\\\n", " "))


@pytest.fixture
def mocked_hub(tmp_path, monkeypatch):
    imagenet = ImageNetInfo()
    id2label = {i: imagenet.index_to_description(i) for i in range(1000)}  # "tabby, tabby cat", as the checkpoints
    local = {}
    for hub_id, builder in HUB_MODELS.items():
        model = builder(num_labels=1000)
        model.config.update({"id2label": id2label, "label2id": {n: i for i, n in id2label.items()}})
        local[hub_id] = tmp_path / hub_id.replace("/", "--")
        model.save_pretrained(local[hub_id])
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(local[hub_id])

    def redirect(original):
        return classmethod(lambda cls, spec, *a, **k: original.__func__(cls, str(local.get(spec, spec)), *a, **k))

    for auto in (AutoModelForImageClassification, AutoImageProcessor):
        monkeypatch.setattr(auto, "from_pretrained", redirect(auto.__dict__["from_pretrained"]))
    load_dataset = datasets.load_dataset
    cifar10 = str(ROOT / "demo_data" / "cifar10")
    monkeypatch.setattr(
        datasets, "load_dataset", lambda source, *a, **k: load_dataset(cifar10 if source == "uoft-cs/cifar10" else source, *a, **k)
    )
    return local


def test_the_readmes_command_runs_as_written(mocked_hub, fake_hub, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(ROOT)  # the command's relative paths: examples/..., out/...
    argv = readme_command()
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "out")
    argv[argv.index("--num_train_epochs") + 1] = "1"
    argv.remove("--bf16")  # a GPU flag; the rest runs on this CPU as written
    argv += ["--use_cpu", "--max_steps", "2", "--max_train_samples", "32", "--max_eval_samples", "16",
             "--per_device_train_batch_size", "8", "--report_to", "none"]  # fmt: skip
    results = distill_main(argv)
    # No --method: auto picks ofa for the CNN student, and the plan, results and card say so.
    assert (results["plan"]["method"], results["method"]) == ("auto", "ofa")
    assert results["families"] == {"teacher": "attention", "student": "cnn"}
    assert "(`ofa`), chosen by `--method auto`" in (tmp_path / "out" / "README.md").read_text()
    student = AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    assert student.config.num_labels == 10 and "cat" in student.config.label2id
    assert [name for name, _ in fake_hub][-1] == "upload_file"  # the card, last


def test_many_to_one_mapping_sums_the_teachers_probabilities(mocked_hub):
    from hf_cakd.model_specs import load_classifier
    from hf_cakd.pipeline import ModelArguments

    mapping = ModelArguments(teacher_label_mapping=str(ROOT / "examples" / "cifar10-from-imagenet1k.json")).teacher_label_mapping
    cifar = datasets.load_dataset(str(ROOT / "demo_data" / "cifar10"))["train"].features["label"].names
    teacher = load_classifier("google/vit-base-patch16-224", dict(enumerate(cifar)), role="teacher", label_mapping=mapping)
    original = AutoModelForImageClassification.from_pretrained(mocked_hub["google/vit-base-patch16-224"]).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mapped, full = teacher.eval()(pixels).logits.softmax(-1), original(pixels).logits.softmax(-1)
    names = {i: n.split(",")[0] for i, n in original.config.id2label.items()}
    cat_rows = [i for i, n in names.items() if n in mapping["cat"]]
    horse_row = next(i for i, n in names.items() if n == mapping["horse"])
    # Within the kept classes, CIFAR-10's cat is as likely against its horse as ImageNet's five cats
    # together against the sorrel: the normalisation over the kept classes cancels out.
    assert len(cat_rows) == 5
    ratio = mapped[:, cifar.index("cat")] / mapped[:, cifar.index("horse")]
    torch.testing.assert_close(ratio, full[:, cat_rows].sum(-1) / full[:, horse_row], rtol=1e-4, atol=0)
