"""Train a committed teacher (see this package's docstring); resumable, and only the small files are kept."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import ViTConfig

from benchmarks.common import REPO, TOKEN_NORM, ModelRecipe

TEACHERS_DIR = Path(__file__).resolve().parent
KEPT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "results.json", "README.md")
LOCAL_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"


@dataclass(frozen=True)
class TeacherRecipe:
    """A classifier trained alone from scratch: the model (architecture and input) and its schedule."""

    model: ModelRecipe
    train_rows: int  # the first rows of the train split (CIFAR-10's last 5,000 are the validation split)
    epochs: float
    learning_rate: float
    warmup: float  # a fraction of the steps
    label_smoothing: float
    batch_size: int = 128
    weight_decay: float = 0.05
    seed: int = 0

    def flags(self) -> list[str]:
        return [
            "--method", "none", "--max_train_samples", str(self.train_rows), "--num_train_epochs", str(self.epochs),
            "--learning_rate", str(self.learning_rate), "--warmup_steps", str(self.warmup),
            "--lr_scheduler_type", "cosine", "--weight_decay", str(self.weight_decay),
            "--label_smoothing_factor", str(self.label_smoothing),
            "--per_device_train_batch_size", str(self.batch_size), "--per_device_eval_batch_size", str(2 * self.batch_size),
            "--save_strategy", "epoch", "--save_total_limit", "1", "--eval_strategy", "no",
            "--logging_steps", "50", "--seed", str(self.seed),
        ]  # fmt: skip


# The attention teacher of the CNN-student pairs: a ViT whose 4x4 token grid at 64 px is the CNN students'
# stage-3 grid at 64 px, as ViT-B/16's 14x14 is ResNet-18's at 224 px (docs/method.md).
TEACHERS = {
    "vit-p16-64": TeacherRecipe(
        model=ModelRecipe(
            "ViT patch 16 at 64 px (4x4 tokens), width 192, 8 layers, 3 heads, MLP x2",
            ViTConfig(
                image_size=64,
                patch_size=16,
                hidden_size=192,
                num_hidden_layers=8,
                num_attention_heads=3,
                intermediate_size=384,
            ),
            64,
            *TOKEN_NORM,
        ),
        train_rows=45_000,
        epochs=40,
        learning_rate=1e-3,
        warmup=0.1,
        label_smoothing=0.1,
    ),
}


def teacher_dir(name: str, root: Path = TEACHERS_DIR) -> Path:
    return root / name


def is_built(directory: Path) -> bool:
    return all((directory / name).is_file() for name in KEPT_FILES)


def build_teacher(recipe: TeacherRecipe, data: str, work_dir: Path, target: Path, extra_flags: list[str] = ()) -> Path:
    """Train (or resume training) into ``work_dir``, then copy the kept files into ``target``."""
    config_dir = recipe.model.save(work_dir.parent / f"{work_dir.name}-config")
    command = [
        sys.executable, str(REPO / "scripts" / "distill.py"), "--student", str(config_dir), "--dataset", data,
        "--output_dir", str(work_dir), *recipe.flags(), *extra_flags,
    ]  # fmt: skip
    if any(work_dir.glob("checkpoint-*")):
        command += ["--resume_from_checkpoint", "last"]
    print(shlex.join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        shutil.copy2(work_dir / name, target / name)
    call = ["python", "-m", "benchmarks.accuracy.teachers", target.name, *extra_flags]
    (target / "command.txt").write_text(shlex.join(call) + "\n")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(TEACHERS))
    parser.epilog = "Other flags (e.g. --use_cpu, --dataloader_num_workers 4) go to scripts/distill.py."
    parser.add_argument("--data", default=str(LOCAL_CIFAR10), help="CIFAR-10 as parquet (img, label) or a Hub id.")
    parser.add_argument("--work_dir", type=Path, help="Checkpoints go here (default: outputs/teachers/<name>).")
    parser.add_argument("--force", action="store_true", help="Train again although the teacher is committed.")
    options, extra_flags = parser.parse_known_args(argv)
    target = teacher_dir(options.name)
    if is_built(target) and not options.force:
        print(f"{target} is built; --force trains it again.", file=sys.stderr)
        return
    work_dir = options.work_dir or REPO / "outputs" / "teachers" / options.name
    build_teacher(TEACHERS[options.name], options.data, work_dir, target, extra_flags)
