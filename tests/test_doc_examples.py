"""Every Python and shell example of README.md and docs/*.md runs as written, offline, on the repository's demo
data and models.

Examples are found by their fences (```python, ```bash, ```yaml), wherever the text moves them. Each runs in a
scratch folder whose demo_data/, examples/ and scripts/ are the repository's, so relative paths work and what it
writes lands there. What the test changes, and why:

- a Hub id an example must name is replaced by a local stand-in (``HUB_STAND_INS``: the embedded CIFAR-10 rows,
  tiny models carrying the ImageNet-1k labels those checkpoints carry), and the test says which in its output;
- every training is cut to ``TINY_RUN`` (2 steps on 32 training and 16 evaluation rows, float32 on the CPU): the
  dataclasses take these values whatever the example passes;
- pushes go to a fake Hub (HfApi's uploads recorded, tests/test_distill_script.py's ``fake_hub``).

Shell commands: ``hf-cakd ...`` runs hf_cakd's entry point, ``python X.py`` / ``accelerate launch X.py`` runs the
script (one process), a line of flags only (``--flag value ...``) is added to a distillation of the demo models
(``DEMO_FLAGS``), a ```yaml block is a config file whose keys are checked by the parser. A Python block that
starts with ``# hf_cakd/<path>.py`` is that module of the package: it is imported (what it registers is
unregistered afterwards). A command that cannot run here is in ``SKIP`` with its reason.
"""

from __future__ import annotations

import logging
import re
import runpy
import shlex
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch
from timm.data import ImageNetInfo
from transformers import AutoModelForImageClassification, ViTImageProcessor

from hf_cakd import methods
from hf_cakd.cli import main as hf_cakd_main
from hf_cakd.cli import parse_distill_args
from hf_cakd.run.pipeline import DataArguments
from hf_cakd.training.training_args import DistillationTrainingArguments
from test_distill_script import fake_hub  # noqa: F401  (a fixture)
from tiny_models import hf_resnet, hf_vit

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = ("demo_data", "examples", "scripts")  # the repository's folders an example may name relatively

# The beginning of a command that is not run here -> why.
SKIP = {
    "make demo": "the full demo takes minutes: tests/test_demo.py runs scripts/demo.py at 2 steps",
    "make test": "the test suite itself",
}
# Hub ids the examples name -> the tiny model's builder, or the local copy of the data set.
HUB_STAND_INS = {
    "google/vit-base-patch16-224": hf_vit,
    "microsoft/resnet-18": hf_resnet,
    "uoft-cs/cifar10": ROOT / "demo_data" / "cifar10",
}
TINY_RUN = {
    DistillationTrainingArguments: {
        "max_steps": 2, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "use_cpu": True,
        "bf16": False, "fp16": False, "report_to": "none", "dataloader_num_workers": 0,
    },
    DataArguments: {"max_train_samples": 32, "max_eval_samples": 16},
}  # fmt: skip
DEMO_FLAGS = ["--teacher", "demo_data/models/resnet-teacher-cifar10", "--student", "demo_data/models/vit-student-config",
              "--dataset", "demo_data/cifar10", "--output_dir", "out/flags"]  # fmt: skip
MODULE_FILE = re.compile(r"\A# (hf_cakd/[\w/]+)\.py\n")


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(python|bash|yaml)\n(.*?)^```", text, re.S | re.M):
            found.append(Example(page, text[: block.start()].count("\n") + 1, block[1], block[2]))
    return found


def commands(script: str) -> list[list[str]]:
    """A shell block's commands, one per line once continuations are joined; comments dropped."""
    lines = script.replace("\\\n", " ").splitlines()
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


def skipped(words: list[str]) -> str | None:
    command = " ".join(words)
    return next((reason for start, reason in SKIP.items() if command.startswith(start)), None)


def run_command(words: list[str]) -> None:
    """One shell command, in this process; exit status 0 expected."""
    if words[0].startswith("--"):
        words = ["hf-cakd", "distill", *DEMO_FLAGS, *words]
    program, *args = words
    try:
        if program == "hf-cakd":
            hf_cakd_main(args)
        elif program == "accelerate" and args[:1] == ["launch"]:
            script = next(i for i, word in enumerate(args) if word.endswith(".py"))  # one process: no launcher flags
            run_script(args[script], args[script + 1 :])
        elif Path(program).name.startswith("python") and args[:1] == ["-m"]:
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif Path(program).name.startswith("python"):
            run_script(args[0], args[1:])
        else:
            pytest.fail(f"No way to run {program!r} here: teach run_command, or add it to SKIP with the reason.")
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"{' '.join(words)} exited with {exit_.code}"


def run_script(path: str, args: list[str]) -> None:
    sys.argv = [path, *args]
    runpy.run_path(path, run_name="__main__")


def run_module_file(name: str, code: str, monkeypatch) -> None:
    """A block that is a module of the package, imported as that module; what it registers is unregistered after."""
    registered = dict(methods.METHODS)
    module = types.ModuleType(name)
    module.__package__ = name.rpartition(".")[0]  # its relative imports are the package's
    monkeypatch.setitem(sys.modules, name, module)
    try:
        exec(compile(code, name, "exec"), module.__dict__)
        assert set(methods.METHODS) - set(registered), f"{name} registered nothing"
    finally:
        methods.METHODS.clear()
        methods.METHODS.update(registered)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, str]:
    """Each of HUB_STAND_INS as a local path: tiny models saved with the ImageNet-1k labels and a 32 px processor."""
    folder = tmp_path_factory.mktemp("hub-stand-ins")
    imagenet = ImageNetInfo()
    id2label = {i: imagenet.index_to_description(i) for i in range(1000)}  # "tabby, tabby cat", as the checkpoints
    local = {}
    for hub_id, stand_in in HUB_STAND_INS.items():
        if isinstance(stand_in, Path):
            local[hub_id] = str(stand_in)
            continue
        model = stand_in(num_labels=1000)
        model.config.update({"id2label": id2label, "label2id": {n: i for i, n in id2label.items()}})
        path = folder / hub_id.replace("/", "--")
        model.save_pretrained(path)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
        local[hub_id] = str(path)
    return local


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A folder like the repository's root, as the current directory; trainings cut to TINY_RUN."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    for cls, values in TINY_RUN.items():
        monkeypatch.setattr(cls, "__post_init__", _shrunk(cls.__post_init__, values))
    run_logger = logging.getLogger("hf_cakd")
    monkeypatch.setattr(run_logger, "level", run_logger.level)  # a run sets its level on hf_cakd's loggers
    return tmp_path


def _shrunk(post_init, values: dict):
    def __post_init__(self):
        for name, value in values.items():
            setattr(self, name, value)
        post_init(self)

    return __post_init__


@pytest.mark.parametrize("example", examples(), ids=lambda example: example.id)
def test_the_example_runs_as_written(example, stand_ins, scratch, fake_hub, monkeypatch):  # noqa: F811
    text = example.text
    for hub_id, local in stand_ins.items():
        if hub_id in text:
            print(f"{example.id}: {hub_id} -> its local stand-in {local}")
            text = text.replace(hub_id, local)
    if example.language == "python":
        module = MODULE_FILE.match(text)
        if module:
            run_module_file(module[1].replace("/", "."), text, monkeypatch)
        else:
            exec(compile(text, example.id, "exec"), {"__name__": "__main__"})
    elif example.language == "yaml":
        (scratch / "run.yaml").write_text(text, encoding="utf-8")
        parse_distill_args([str(scratch / "run.yaml")])
    else:
        ran = 0
        for words in commands(text):
            reason = skipped(words)
            if reason:
                print(f"{example.id}: not run: {' '.join(words)} ({reason})")
                continue
            run_command(words)
            ran += 1
        if not ran:
            pytest.skip(f"{example.id}: every command is in SKIP")


def test_the_examples_are_found_and_every_skip_is_used():
    found = examples()
    assert {example.page.name for example in found} >= {"README.md", "architecture.md", "method.md"}
    assert {example.language for example in found} == {"python", "bash", "yaml"}
    shell = [words for example in found if example.language == "bash" for words in commands(example.text)]
    assert {start for start in SKIP if any(" ".join(words).startswith(start) for words in shell)} == set(SKIP)


def test_many_to_one_mapping_sums_the_teachers_probabilities(stand_ins):
    """examples/cifar10-from-imagenet1k.json, docs/usage.md's ImageNet-1k -> CIFAR-10 mapping, on its stand-in teacher."""
    from hf_cakd.model_specs import load_classifier
    from hf_cakd.run.pipeline import ModelArguments

    mapping = ModelArguments(teacher_label_mapping=str(ROOT / "examples" / "cifar10-from-imagenet1k.json")).teacher_label_mapping
    cifar = datasets.load_dataset(str(ROOT / "demo_data" / "cifar10"))["train"].features["label"].names
    vit = stand_ins["google/vit-base-patch16-224"]
    teacher = load_classifier(vit, dict(enumerate(cifar)), role="teacher", label_mapping=mapping)
    original = AutoModelForImageClassification.from_pretrained(vit).eval()
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
