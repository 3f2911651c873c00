"""Artefacts from someone else run no code (docs/operations.md, "Untrusted artefacts").

Each file a run reads is replaced by a payload pickle whose unpickling would create a marker file;
every run ends in one line with its exit code (3 for a model or checkpoint, 2 for a config file)
and creates no marker. A model whose config names code of its own is refused even when the user
would answer yes; names from folders and data sets reach the card as text.
"""

from __future__ import annotations

import ast
import builtins
import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers.dynamic_module_utils
from transformers.utils import WEIGHTS_NAME

import hf_cakd.run.plan
from hf_cakd.cli import distill_main
from hf_cakd.errors import InputError, UsageError, run_cli
from hf_cakd.run.hub import student_model_card
from hf_cakd.model_specs import load_classifier
from test_distill_script import distill_args, workspace  # noqa: F401  (workspace: a fixture)
from test_hub import card_inputs
from test_trainer import make_trainer
from tiny_models import build

ROOT = Path(__file__).resolve().parents[1]
NEVER = "weights_only=False"


class Payload:
    """Unpickled by anything but torch's safe loader, it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path) -> None:
    """Replace ``path`` with a payload pickle (made as torch.save makes a checkpoint file)."""
    path.unlink(missing_ok=True)
    torch.save({"state": Payload(marker)}, path)


def one_line_exit(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``hf-cakd distill argv`` in this process: its exit code and its one error line."""
    with pytest.raises(SystemExit) as stopped:
        run_cli(distill_main, argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return stopped.value.code, lines[0]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("HF_CAKD_DEBUG", raising=False)


# ---- models ----


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_pickled_model_torch_refuses_is_one_line_exit_3_and_runs_nothing(workspace, tmp_path, role, capsys):
    model, marker = tmp_path / "model", tmp_path / "marker"
    shutil.copytree(workspace["teacher"], model)
    (model / "model.safetensors").unlink()
    plant(model / WEIGHTS_NAME, marker)
    args = distill_args(workspace, "kd", tmp_path / "out")
    args[args.index(f"--{role}") + 1] = str(model)
    code, line = one_line_exit(args, capsys)
    assert code == 3 and not marker.exists()
    assert line.startswith(f"error: --{role} {str(model)!r}: {model / WEIGHTS_NAME} is refused by torch's safe loader")
    assert "Re-save the model as safetensors where it came from" in line and NEVER not in line


def test_a_legitimate_pickled_model_still_loads_and_an_unreadable_one_is_named(tmp_path):
    model = build("hf-resnet")
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / WEIGHTS_NAME)
    loaded = load_classifier(str(tmp_path), role="teacher")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError) as refused:
        load_classifier(str(tmp_path), role="teacher")
    assert str(refused.value).startswith(f"--teacher {str(tmp_path)!r}: {weights} cannot be read: it is truncated")
    assert "\n" not in str(refused.value)


REMOTE_CODE = """from pathlib import Path
Path({marker!r}).touch()
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


def remote_code_model(folder: Path, marker: Path, model_type: str, weights: bool) -> Path:
    """A model folder whose config names its own code (auto_map), which creates ``marker`` on import."""
    folder.mkdir()
    (folder / "modeling_evil.py").write_text(REMOTE_CODE.format(marker=str(marker)))
    auto_map = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForImageClassification": "modeling_evil.Evil"}
    config = {"model_type": model_type, "auto_map": auto_map}
    if model_type == "resnet":  # a config transformers can build itself
        config = {**build("hf-resnet").config.to_dict(), **config}
    (folder / "config.json").write_text(json.dumps(config))
    if weights:
        safetensors.torch.save_file({"w": torch.zeros(1)}, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("weights", [True, False], ids=["with-weights", "config-only"])
def test_a_model_that_names_its_own_code_is_refused_even_when_the_user_would_say_yes(tmp_path, monkeypatch, weights):
    marker = tmp_path / "marker"
    monkeypatch.setattr(builtins, "input", lambda prompt="": "y")  # transformers' "run the custom code? [y/N]"
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # if it did
    model = remote_code_model(tmp_path / "evil", marker, "evil", weights)
    with pytest.raises(InputError) as refused:
        load_classifier(str(model), role="teacher")
    message = str(refused.value)
    assert message.startswith(f"--teacher {str(model)!r}: {model / 'config.json'} names code of its own")
    assert "auto_map: AutoConfig, AutoModelForImageClassification" in message and "'evil'" in message
    assert "hf_cakd never runs code that comes with a model" in message and "trust_remote_code" not in message
    assert "\n" not in message and not marker.exists()
    with pytest.raises(UsageError, match="^hf_cakd never runs code that comes with a model: drop trust_remote_code=True"):
        load_classifier(str(model), trust_remote_code=True)
    assert not marker.exists()


def test_a_model_transformers_implements_loads_with_its_own_code_whatever_its_config_names(tmp_path):
    marker = tmp_path / "marker"
    model = remote_code_model(tmp_path / "resnet", marker, "resnet", weights=False)
    assert type(load_classifier(str(model))).__name__ == "ResNetForImageClassification"
    assert not marker.exists()


# ---- checkpoints ----


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """An FBT run (the method's parts, its assistant) with complete checkpoints at steps 1 and 2."""
    run = tmp_path_factory.mktemp("untrusted") / "run"
    make_trainer(run, "fbt", train_size=8, max_steps=2, save_strategy="steps", save_steps=1).train()
    return run


TAMPERED = {
    "rng_state.pth": "is refused by torch's safe loader",
    "optimizer.pt": "is refused by torch's safe loader",
    "scheduler.pt": "is refused by torch's safe loader",
    "distillation_method.safetensors": "is not a readable safetensors file",
    "assistant/model.safetensors": "is not a readable safetensors file",
    "model.safetensors": "is not a readable safetensors file",
    "trainer_state.json": "is not valid JSON",
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_checkpoint_file_that_cannot_be_read_safely_is_one_line_exit_3_before_anything_loads(
    workspace, checkpoints, tmp_path, monkeypatch, capsys, name
):
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(checkpoints, run)
    plant(run / "checkpoint-2" / name, marker)
    monkeypatch.setattr(hf_cakd.run.plan, "load_image_dataset", None)  # called, it would fail with a TypeError
    code, line = one_line_exit(distill_args(workspace, "fbt", run, "--resume_from_checkpoint", "last"), capsys)
    assert code == 3 and not marker.exists()
    assert line.startswith(f"error: Cannot resume from {run / 'checkpoint-2'}: {run / 'checkpoint-2' / name} {TAMPERED[name]}")
    assert f"Resume from an earlier complete checkpoint (--resume_from_checkpoint {run / 'checkpoint-1'})" in line
    assert line.endswith(" or start afresh with another --output_dir.") and NEVER not in line


def test_the_trainer_refuses_a_checkpoint_with_a_payload_and_ignores_training_args_bin(checkpoints, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(checkpoints, run)
    shutil.rmtree(run / "checkpoint-2")
    plant(run / "checkpoint-1" / "rng_state.pth", marker)
    trainer = make_trainer(run, "fbt", train_size=8, max_steps=2, save_strategy="no")
    with pytest.raises(InputError, match=r"rng_state\.pth is refused .* No earlier complete checkpoint is beside it: start afresh with another"):
        trainer.train(resume_from_checkpoint=str(run / "checkpoint-1"))

    # Nothing reads training_args.bin (the Trainer's pickled arguments): a payload there stays unread.
    shutil.copy(checkpoints / "checkpoint-1" / "rng_state.pth", run / "checkpoint-1" / "rng_state.pth")
    plant(run / "checkpoint-1" / "training_args.bin", marker)
    plant(run / "training_args.bin", marker)
    make_trainer(run, "fbt", train_size=8, max_steps=2, save_strategy="no").train(resume_from_checkpoint=True)
    assert not marker.exists()


# ---- config files, and the rule itself ----


def test_a_yaml_tag_in_a_config_file_is_a_usage_error_naming_the_file(tmp_path, capsys):
    marker = tmp_path / "marker"
    config = tmp_path / "run.yaml"
    config.write_text(f'method: kd\nteacher: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, line = one_line_exit([str(config)], capsys)
    assert code == 2 and not marker.exists()
    assert line.startswith(f"error: {config} holds a YAML tag a config file cannot hold (")
    assert "python/object/apply:os.system" in line and "at line 2" in line


def unsafe_calls(source: str) -> list[str]:
    """Calls in ``source`` that load a pickle unsafely or run a model's code: ``weights_only=False``,
    ``trust_remote_code=True``, ``pickle.load(s)``, ``yaml.load``/``yaml.unsafe_load``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
            if (keyword.arg, value) in (("weights_only", False), ("trust_remote_code", True)):
                found.append(f"{keyword.arg}={value}")
        function = ast.unparse(node.func)
        if function in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "torch.load"):
            found.append(function)
    return found


def test_hf_cakd_never_loads_pickles_unsafely_nor_runs_a_models_code():
    """The rule, in the source: every torch.load is safe_loading's (weights_only=True), no trust_remote_code=True."""
    example = "torch.load(f, weights_only=False); m.from_pretrained(p, trust_remote_code=True); yaml.load(f)"
    assert sorted(unsafe_calls(example)) == ["torch.load", "trust_remote_code=True", "weights_only=False", "yaml.load"]
    sources = {path.relative_to(ROOT).as_posix(): path.read_text() for path in (ROOT / "hf_cakd").rglob("*.py")}
    assert len(sources) > 20
    found = {path: calls for path, source in sources.items() if (calls := unsafe_calls(source))}
    assert found == {"hf_cakd/safe_loading.py": ["torch.load"]}
    assert "weights_only=True" in sources["hf_cakd/safe_loading.py"]


def test_names_from_folders_reach_the_card_as_text_not_as_template_or_markup(tmp_path):
    teacher = tmp_path / '{{ "ab" ~ "cd" }} <img src=x> *bold* [link](x)'
    dataset = tmp_path / "{% for i in range(3) %}loop{% endfor %}"
    student = tmp_path / "tick`name"
    for folder in (teacher, dataset, student):
        folder.mkdir()
    card = student_model_card(card_inputs(teacher=str(teacher), dataset=str(dataset), student=str(student)))
    text = card.text
    assert "abcd" not in text and "looploop" not in text  # jinja inserted the names, it did not run them
    assert r'**{{ "ab" \~ "cd" }} \<img src=x\> \*bold\* \[link\](x)**' in text
    assert r"**{% for i in range(3) %}loop{% endfor %}**" in text and r"**tick\`name** student" in text
    assert '- teacher: `{{ "ab" ~ "cd" }} <img src=x> *bold* [link](x)` (' in text  # a code span shows it verbatim
    assert "- student: ``tick`name`` (" in text
    assert card.data.teacher_model == teacher.name  # the metadata is YAML, which quotes it
