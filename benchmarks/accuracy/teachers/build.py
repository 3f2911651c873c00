"""Train a committed teacher (see this package's docstring); resumable, and only the small files are kept."""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import ViTConfig

from benchmarks.common import REPO, TOKEN_NORM, ModelRecipe, Schedule

TEACHERS_DIR = Path(__file__).resolve().parent
KEPT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "results.json", "README.md")
LOCAL_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"


@dataclass(frozen=True)
class Stage:
    """One schedule of a teacher's training; a later stage starts from the weights the one before it saved, with a
    fresh optimizer (a warm restart)."""

    epochs: float
    schedule: Schedule


@dataclass(frozen=True)
class TeacherRecipe:
    """A classifier trained alone from scratch: the model (architecture and input) and its stages."""

    model: ModelRecipe
    train_rows: int  # the first rows of the train split (CIFAR-10's last 5,000 are the validation split)
    stages: tuple[Stage, ...]
    label_smoothing: float
    batch_size: int = 128
    seed: int = 0

    def flags(self, stage: Stage) -> list[str]:
        return [
            "--method", "none", "--max_train_samples", str(self.train_rows), "--num_train_epochs", str(stage.epochs),
            "--learning_rate", str(stage.schedule.learning_rate), "--warmup_steps", str(stage.schedule.warmup),
            "--lr_scheduler_type", stage.schedule.lr_scheduler, "--weight_decay", str(stage.schedule.weight_decay),
            "--label_smoothing_factor", str(self.label_smoothing),
            "--per_device_train_batch_size", str(self.batch_size), "--per_device_eval_batch_size", str(2 * self.batch_size),
            "--save_strategy", "epoch", "--save_total_limit", "1", "--eval_strategy", "no",
            "--logging_steps", "50", "--seed", str(self.seed),
        ]  # fmt: skip


# The attention teacher of the CNN-student pairs: a ViT whose 4x4 token grid at 64 px is the CNN students'
# stage-3 grid at 64 px, as ViT-B/16's 14x14 is ResNet-18's at 224 px (docs/method.md). Trained in three
# stages because the first underfit and each warm restart gained (benchmarks/accuracy/experiments.md). The committed
# weights' second stage resumed the first one's optimizer into a 40-epoch cosine (5.9e-4 falling to 0), which
# its own 20-epoch cosine from 5.9e-4 approximates.
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
        stages=(
            Stage(20, Schedule(learning_rate=1e-3, warmup=0.1)),
            Stage(20, Schedule(learning_rate=5.9e-4, warmup=0.0)),
            Stage(20, Schedule(learning_rate=5e-4, warmup=0.05)),
        ),
        label_smoothing=0.1,
    ),
}


def teacher_dir(name: str, root: Path = TEACHERS_DIR) -> Path:
    return root / name


def is_built(directory: Path) -> bool:
    return all((directory / name).is_file() for name in KEPT_FILES)


def weights_digest(directory: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a teacher's weights: which teacher a benchmark record learned from."""
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()[:16]


def build_teacher(recipe: TeacherRecipe, data: str, work_dir: Path, target: Path, extra_flags: list[str] = ()) -> Path:
    """Train each stage into ``work_dir/stage-<i>`` (resuming a stopped one; skipping one that finished with the
    same start and flags, as its ``stage.json`` records), then copy the last stage's kept files into ``target``."""
    start = recipe.model.save(work_dir / "config")
    for index, stage in enumerate(recipe.stages):
        stage_dir = work_dir / f"stage-{index}"
        record, finished = {"start": str(start), "flags": recipe.flags(stage)}, stage_dir / "stage.json"
        if not (is_built(stage_dir) and finished.is_file() and json.loads(finished.read_text()) == record):
            _train(recipe, stage, start, data, stage_dir, extra_flags)
            finished.write_text(json.dumps(record, indent=2) + "\n")
        start = stage_dir
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        shutil.copy2(start / name, target / name)
    call = ["python", "-m", "benchmarks.accuracy.teachers", target.name, *extra_flags]
    (target / "command.txt").write_text(shlex.join(call) + "\n")
    return target


def _train(recipe: TeacherRecipe, stage: Stage, start: Path, data: str, output_dir: Path, extra_flags) -> None:
    command = [
        sys.executable, str(REPO / "scripts" / "distill.py"), "--student", str(start), "--dataset", data,
        "--output_dir", str(output_dir), *recipe.flags(stage), *extra_flags,
    ]  # fmt: skip
    if any(output_dir.glob("checkpoint-*")):
        command += ["--resume_from_checkpoint", "last"]
    print(shlex.join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(TEACHERS))
    parser.epilog = "Other flags (e.g. --use_cpu, --dataloader_num_workers 4) go to scripts/distill.py."
    parser.add_argument("--data", default=str(LOCAL_CIFAR10), help="CIFAR-10 as parquet (img, label) or a Hub id.")
    parser.add_argument("--work_dir", type=Path, help="Each stage trains into <work_dir>/stage-<i> (default: outputs/teachers/<name>).")
    parser.add_argument("--force", action="store_true", help="Train again although the teacher is committed.")
    options, extra_flags = parser.parse_known_args(argv)
    target = teacher_dir(options.name)
    if is_built(target) and not options.force:
        print(f"{target} is built; --force trains it again.", file=sys.stderr)
        return
    work_dir = options.work_dir or REPO / "outputs" / "teachers" / options.name
    build_teacher(TEACHERS[options.name], options.data, work_dir, target, extra_flags)
