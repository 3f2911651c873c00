"""Does FBT beat KD, OFA and no distillation? Top-1 on real CIFAR-10, three heterogeneous pairs.

    .venv/bin/python -m benchmarks.accuracy --profile quick     # CPU, about 5 hours, 3 seeds
    .venv/bin/python -m benchmarks.accuracy --profile full --data /data/cifar10   # GPU, 3 seeds
    .venv/bin/python -m benchmarks.accuracy --profile smoke --output_dir /tmp/bench-smoke
    .venv/bin/python -m benchmarks.accuracy --profile quick --report_only   # chart/table/README again

What is run
-----------
**Data.** ``--data``: a CIFAR-10 parquet directory (``train.parquet``, ``test.parquet``; columns
``img``/``label``; default ``../shared/datasets/cifar10`` beside the repository when it exists, else
the Hub's ``uoft-cs/cifar10``, same schema) or any Hub id ``load_dataset`` takes. Models train on the first rows of the train
split (stored shuffled): students on ``train_samples``, teachers on ``teacher_train_samples``; every
model is evaluated on the *whole* test split (10,000 images), except in ``smoke``.

**Models.** All from scratch, sized for 32 px images, written as config-only directories
(``config.json`` + ``preprocessor_config.json`` with their resolution and mean/std) under
``<output_dir>/models/``; ``hf_cakd.load_classifier`` builds them from there, the way a user's own
config would be. Roles (``quick`` sizes; ``full`` in brackets):

- ``cnn_teacher``: transformers ResNet, basic blocks 2-2-2-2, widths 32-256 (2.80M parameters)
  [64-512, ResNet-18: 11.2M], 32 px;
- ``vit_teacher``: transformers ViT, patch 4, width 128, 6 layers, MLP x2 (0.81M) [ViT-S: 384,
  12 layers, MLP x4: 21M], 32 px;
- ``vit_student``: transformers ViT, patch 4, width 96, 6 layers, MLP x2 (0.46M) [ViT-Ti: 192,
  12 layers, MLP x4: 5.4M], 32 px;
- ``cnn_student``: transformers MobileNetV2, width x0.5 (0.70M) [x1.0: 2.2M], 32 px;
- ``mlp_student``: timm ``mixer_s16_224`` (8 blocks of width 512) through ``TimmWrapperConfig``,
  MLP ratios (0.25, 0.5) (2.55M) [(0.5, 2.0): 9.1M], 64 px [128 px].

timm's Mixer/ResMLP entry points fix patch size, width and depth (passing ``patch_size`` or
``embed_dim`` again is a ``TypeError``), but ``img_size`` and ``mlp_ratio`` may be set. At 32 px the
16 px patches would leave 2x2 tokens, so the MLP student sees the images upsampled (its
``preprocessor_config.json`` says 64 px: 4x4 tokens; 128 px in ``full``: 8x8 tokens, as many as a
patch-4 model at 32 px), and its MLP ratios are cut so that it fits the CPU budget. It is a plain
``TimmWrapperForImageClassification``: it saves and loads as a transformers model.

**Pairs.** ``cnn_to_vit`` (cnn_teacher -> vit_student), ``vit_to_cnn`` (vit_teacher ->
cnn_student), ``cnn_to_mlp`` (cnn_teacher -> mlp_student).

**Validation screen** (``TUNING``, first). The baselines' settings (kd's temperature; OFA's branches,
weight and gamma, the published recipe among them) and fbt's bridge (upsampling the CNN's 2x2 stage-3
map or not, on the pairs whose suffix runs on any grid: ``TUNING_PAIRS``) are screened on a validation
split: the last 1/``VALIDATION_FRACTION`` of the train split (CIFAR-10: rows 45,000-49,999, written once
as parquet into ``<output_dir>/validation_data/``). Students train on the same first rows as in the
table, at the first seed, into ``<output_dir>/tuning/<pair>/<method>/<setting>/``; the quick teachers
never see those rows (the full profile's train on all rows). The table runs each method's default, which follows this
screen (benchmarks/accuracy/experiments.md); the test split never chooses a setting.

**Runs.** Each teacher is trained once by ``hf_cakd.pipeline.distill`` with ``method="none"``
(``teacher_epochs``) into ``<output_dir>/teachers/<role>/`` and reused while its ``results.json``
exists. Then, seed by seed (so an interrupted benchmark has whole seeds), every pair x method (every
registered method, ``hf_cakd.methods.METHODS``: ``none``, ``kd``, ``feature_kd``, ``fitnet``, ``ofa``,
``fbt``) is one ``distill`` call into ``<output_dir>/runs/<pair>/<method>/seed<k>/``, all with the same
schedule (``benchmarks.common.Schedule``: AdamW, cosine decay, 5% warm-up, weight decay 0.05,
``epochs``) and every method at its config's defaults; methods that need no teacher (``none``) get
none. ``kd`` and ``feature_kd`` are the losses of timm's ``LogitDistillationTask`` (T=4) and
``FeatureDistillationTask`` (tests/test_timm_peers.py), the peers a timm user would pick. Last, the
paper's ablation (``ABLATIONS``: fbt without InfoNCE, without the logit loss, without T -> F,
without F -> S; the first seed) into ``<output_dir>/ablation/<pair>/<variant>/``.

A run whose ``results.json`` exists is reused, so an interrupted benchmark resumes where it stopped
(delete a directory to redo it); so is a run the ``results.json`` in ``--output_dir`` holds when it was
written for the same schedule (run folders are not kept in git: a fresh clone resumes from the committed
results, and trains a teacher again only when a run left to train needs it). ``--pairs``,
``--seeds``, ``--methods``, ``--ablations``, ``--settings`` and ``--parts`` train a part only, so that two
single-threaded processes can share a 2-core machine (``OMP_NUM_THREADS=1``);
every process, and ``--collect_only``, gathers all finished runs into ``results.json``, listing the
runs not finished yet under ``missing`` (and under the table).

**Outputs** (``--output_dir``, default ``benchmarks/accuracy/<profile>/``): ``results.json`` (per pair
the teacher's top-1/top-5, per method top-1/top-5 per seed, mean, std, train seconds), ``accuracy.png``
(grouped bars per pair, a dashed line at the teacher's top-1, error bars over seeds), the ablation and
validation-screen tables, and
``table.md``, which is also put into ``README.md`` between ``<!-- benchmark-accuracy:start -->`` and
``<!-- benchmark-accuracy:end -->`` (``quick``/``full`` only, unless ``--readme`` is given).

Profiles and the quick profile's budget
---------------------------------------
- ``smoke``: the quick models, 256 train / 128 test images, 2 steps per run: tests this script in
  under a minute. It then *times* the quick profile on this machine (two training steps of every
  run at its batch size, the input pipeline, evaluation forward passes) and prints the projected
  wall time of ``--profile quick``: ``results.json["quick_estimate"]``.
- ``quick`` (2-core CPU, about 5 hours): students 5 epochs on the first 10,000 training images,
  teachers 8 epochs on the first 20,000 (a teacher should know more than its student, as the
  paper's pretrained teachers do: on the validation screens of experiments.md each teacher beat
  its students trained alone by 19 to 27 points), batch 128, 3 seeds, evaluation on all 10,000
  test images. Settings were chosen on a validation split of the training images (the
  validation screen above, and FBT's options: benchmarks/accuracy/experiments.md), never on this test split.
- ``full`` (one GPU): the larger models, all 50,000 training images, teachers 100 epochs,
  students 50 epochs, batch 256, 3 seeds, 8 data-loading workers, bf16 on CUDA.

The quick budget, as the smoke profile measured it on this machine (2-core Xeon, idle, 2 torch
threads, batch 128, data decoded in the training process, so a step's time and its batch's
decoding add up). A run costs ``steps x s/step + images seen / pipeline rate + 10,000 x (1/student
forward + 1/teacher forward + 1/pipeline rate) + 5 s set-up``. Per run (minutes):

    pair          none  feature_kd  fitnet  kd    ofa   fbt
    cnn_to_vit    2.2   2.3         2.2     2.3   2.5   2.8
    vit_to_cnn    1.1   2.0         2.1     2.0   2.0   2.7
    cnn_to_mlp    5.1   5.2         5.2     5.3   5.5   7.4

each 395 steps (10,000 images x 5 epochs); the teachers 1,256 steps (20,000 x 8): ResNet 2.5 min,
ViT 9.2 min. In all: 192 minutes for the 3-seed table, 52 for the ablation and about 75 for the
validation screen (6 runs of kd/ofa per pair, 2 of fbt on the ViT pairs), about 5 hours on the idle machine; two
single-threaded processes (``--pairs``/``--seeds``) shorten the wall time.
One or two data-loading workers made runs 5-15% slower on two cores, so ``quick`` uses none. The
MLP student dominates: a 512-wide Mixer is the slowest model per image on a CPU, hence its cut MLP
ratios and 64 px. CNN final maps stay 1x1 at 32 px (ImageNet-style stems): 64 px inputs for the
CNNs would have cost about four times their compute, past the budget.

Timings depend on what else runs on the machine; the estimate is for an idle one.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    MobileNetV2Config,
    PretrainedConfig,
    ResNetConfig,
    TimmWrapperConfig,
    ViTConfig,
    ViTImageProcessor,
)
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
)

from hf_cakd import load_classifier, staged_view
from benchmarks.common import (
    REPO,
    ModelPair,
    Schedule,
    StepRow,
    StepSettings,
    benchmark_methods,
    machine_info,
    measure_pipeline,
    measure_step,
    pyplot,
    read_results,
    setup_logging,
    shown_path,
    training_arguments,
    write_results,
    write_table,
)
from hf_cakd.data import load_image_dataset
from hf_cakd.methods import method_class
from hf_cakd.pipeline import DataArguments, ModelArguments, distill

LOCAL_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"
HUB_CIFAR10 = "uoft-cs/cifar10"
TEACHER_METHOD = "none"  # teachers are trained alone, on the labels
PAIRS = {  # pair -> (teacher role, student role)
    "cnn_to_vit": ("cnn_teacher", "vit_student"),
    "vit_to_cnn": ("vit_teacher", "cnn_student"),
    "cnn_to_mlp": ("cnn_teacher", "mlp_student"),
}
README_REGION = "benchmark-accuracy"
# The paper's ablation (one seed, the profile's first): fbt with one part switched off.
ABLATIONS = {
    "without InfoNCE": {"infonce_weight": 0.0},
    "without the logit loss": {"logit_weight": 0.0},
    "without T -> F": {"fbt_transfer_paths": "teacher_student,assistant_student"},
    "without F -> S": {"fbt_transfer_paths": "teacher_student,teacher_assistant"},
}
ABLATED_METHOD = "fbt"
# Settings screened on the validation split (the first seed): {method: {setting: method_config}}; {} is the
# method's default, which the table runs.
TUNING = {
    "kd": {"T=2": {"kd_temperature": 2.0}, "T=4": {}, "T=8": {"kd_temperature": 8.0}},
    "ofa": {
        "branches on stages 1-3, weight 1": {},
        "published recipe": {"ofa_stages": "1,2,3,4", "ofa_loss_weight": 0.1},
        "gamma 1.5": {"ofa_gamma": 1.5},
    },
    "fbt": {
        "bridge upsamples": {"bridge_upsample": "true"},
        "bridge never upsamples": {"bridge_upsample": "false"},
        "OFA's branches on stages 1-3": {"fbt_deep_supervision": "1,2,3", "fbt_deep_supervision_weight": 1.0},
    },
}
# Methods screened on some pairs only (the others: every pair). fbt's screen compares bridges on the pairs whose
# suffix runs on any grid (the ViTs; the default bridge_upsample "auto" keeps the CNN's 2x2 grid for the ViT
# student, upsamples it for the ViT teacher), which the Mixer's token MLP does not.
TUNING_PAIRS = {"fbt": ("cnn_to_vit", "vit_to_cnn")}
VALIDATION_FRACTION = 10  # the last 1/10 of the train split (CIFAR-10: rows 45,000-49,999) is the validation split
BENCHMARK_PARTS = ("tuning", "table", "ablation")
# CNNs get the ImageNet statistics, ViT and Mixer the 0.5 ones, as their transformers/timm configs do.
CNN_NORM = (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))
TOKEN_NORM = (tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD))
COMMAND = ".venv/bin/python -m benchmarks.accuracy --profile quick"


# ---- models and profiles ----


@dataclass(frozen=True)
class ModelRecipe:
    """A classifier built from scratch: its config, and the resolution and normalisation of its inputs."""

    name: str
    config: PretrainedConfig
    image_size: int
    mean: tuple[float, ...] = CNN_NORM[0]
    std: tuple[float, ...] = CNN_NORM[1]

    def save(self, directory: Path) -> Path:
        """A config-only directory: ``load_classifier`` builds the model, the processor gives its inputs."""
        self.config.save_pretrained(directory)
        size = {"height": self.image_size, "width": self.image_size}
        ViTImageProcessor(size=size, image_mean=list(self.mean), image_std=list(self.std)).save_pretrained(directory)
        return directory


def _resnet(widths: list[int], name: str) -> ModelRecipe:
    config = ResNetConfig(embedding_size=widths[0], hidden_sizes=widths, depths=[2, 2, 2, 2], layer_type="basic")
    return ModelRecipe(name, config, 32)


def _vit(width: int, layers: int, heads: int, mlp_ratio: int, name: str) -> ModelRecipe:
    config = ViTConfig(
        image_size=32,
        patch_size=4,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=mlp_ratio * width,
    )
    return ModelRecipe(name, config, 32, *TOKEN_NORM)


def _mixer(image_size: int, mlp_ratio: tuple[float, float], name: str) -> ModelRecipe:
    config = TimmWrapperConfig(
        architecture="mixer_s16_224", model_args={"img_size": image_size, "mlp_ratio": list(mlp_ratio)}
    )
    return ModelRecipe(name, config, image_size, *TOKEN_NORM)


def _mobilenet_v2(width: float, name: str) -> ModelRecipe:
    # transformers' default classifier dropout (0.8) cost the student alone 2.1 points on the validation
    # screen (benchmarks/accuracy/experiments.md); 0.2 is MobileNetV2's own recipe.
    config = MobileNetV2Config(depth_multiplier=width, image_size=32, classifier_dropout_prob=0.2)
    return ModelRecipe(name, config, 32)


QUICK_MODELS = {
    "cnn_teacher": _resnet([32, 64, 128, 256], "ResNet 2-2-2-2, widths 32-256"),
    "vit_teacher": _vit(128, 6, 4, 2, "ViT patch 4, width 128, 6 layers"),
    "vit_student": _vit(96, 6, 3, 2, "ViT patch 4, width 96, 6 layers"),
    "cnn_student": _mobilenet_v2(0.5, "MobileNetV2 x0.5"),
    "mlp_student": _mixer(64, (0.25, 0.5), "MLP-Mixer S/16, MLP ratios (0.25, 0.5)"),
}
FULL_MODELS = {
    "cnn_teacher": _resnet([64, 128, 256, 512], "ResNet-18 (2-2-2-2, widths 64-512)"),
    "vit_teacher": _vit(384, 12, 6, 4, "ViT-S patch 4 (width 384, 12 layers)"),
    "vit_student": _vit(192, 12, 3, 4, "ViT-Ti patch 4 (width 192, 12 layers)"),
    "cnn_student": _mobilenet_v2(1.0, "MobileNetV2 x1.0"),
    "mlp_student": _mixer(128, (0.5, 2.0), "MLP-Mixer S/16, MLP ratios (0.5, 2.0)"),
}


@dataclass(frozen=True)
class Profile:
    """One schedule for all runs of a benchmark."""

    models: dict[str, ModelRecipe]
    train_samples: int | None  # students train on the first N rows of the train split; None: all
    teacher_train_samples: int | None  # teachers likewise
    eval_samples: int | None  # None: the whole test split
    epochs: float
    teacher_epochs: float
    seeds: tuple[int, ...]
    batch_size: int
    schedule: Schedule = field(default_factory=Schedule)
    max_steps: int = -1  # > 0: stop every run after this many steps (smoke)
    dataloader_workers: int = 0
    bf16: bool = False  # on CUDA only


PROFILES = {
    "smoke": Profile(QUICK_MODELS, 256, 256, 128, epochs=1, teacher_epochs=1, seeds=(0,), batch_size=32, max_steps=2),
    "quick": Profile(QUICK_MODELS, 10_000, 20_000, None, epochs=5, teacher_epochs=8, seeds=(0, 1, 2), batch_size=128),
    "full": Profile(
        FULL_MODELS,
        None,
        None,
        None,
        epochs=50,
        teacher_epochs=100,
        seeds=(0, 1, 2),
        batch_size=256,
        dataloader_workers=8,
        bf16=True,
    ),
}
ESTIMATED_PROFILE = "quick"  # what the smoke profile times
RUN_OVERHEAD_S = 5  # per distill call: data, model and trainer set-up, saving (1-2 s in the smoke runs)


def write_model_dirs(profile: Profile, root: Path) -> dict[str, dict]:
    """Save each role's config-only directory; describe it (parameters, family, input size)."""
    described = {}
    for role, recipe in profile.models.items():
        directory = recipe.save(root / role)
        model = load_classifier(str(directory), {i: str(i) for i in range(10)})
        described[role] = {
            "name": recipe.name,
            "spec": str(directory),
            "params": sum(p.numel() for p in model.parameters()),
            "family": staged_view(model, recipe.image_size).family,
            "image_size": recipe.image_size,
        }
    return described


# ---- the runs ----


def run_once(
    output_dir: Path, label: str, profile: Profile, data: DataArguments, models: ModelArguments, **kwargs
) -> dict:
    """One ``distill`` run into ``output_dir`` with the profile's schedule, or its results.json when an
    earlier run finished there. ``kwargs``: ``method``, ``seed``, ``num_train_epochs``. The teacher is
    dropped for methods that need none."""
    results_file = output_dir / "results.json"
    if results_file.exists():
        print(f"[benchmark] {label}: reusing {results_file}", file=sys.stderr, flush=True)
        return json.loads(results_file.read_text())
    print(f"[benchmark] {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if not method_class(kwargs["method"]).requires_teacher:
        models = ModelArguments(student=models.student)
    training_args = training_arguments(
        output_dir,
        schedule=profile.schedule,
        max_steps=profile.max_steps,
        per_device_train_batch_size=profile.batch_size,
        per_device_eval_batch_size=2 * profile.batch_size,
        dataloader_num_workers=profile.dataloader_workers,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        use_cpu=not torch.cuda.is_available(),
        bf16=profile.bf16 and torch.cuda.is_available(),
        **kwargs,
    )
    results = distill(models, data, training_args)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    top1 = results["metrics"].get("student", {}).get("top1", float("nan"))
    print(f"[benchmark] {label}: top-1 {100 * top1:.2f}% ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return results


def _run_summary(results: dict, **where) -> dict:
    """What the benchmark keeps of one run's results.json: the student's accuracy, the top-1 of the teacher
    it learned from and of the assistant when the method has one (FBT's F), and the training time."""
    summary = where | results["metrics"]["student"] | {"train_seconds": results["train_seconds"]}
    for model in ("teacher", "assistant"):
        if model in results["metrics"]:
            summary[f"{model}_top1"] = results["metrics"][model]["top1"]
    return summary


def _summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _teacher_dir(output_dir: Path, role: str) -> Path:
    return output_dir / "teachers" / role


def _run_dir(output_dir: Path, pair: str, method: str, seed: int) -> Path:
    return output_dir / "runs" / pair / method / f"seed{seed}"


def _ablation_dir(output_dir: Path, pair: str, variant: str) -> Path:
    return output_dir / "ablation" / pair / _slug(variant)


def _tuning_dir(output_dir: Path, pair: str, method: str, setting: str) -> Path:
    return output_dir / "tuning" / pair / method / _slug(setting)


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("->", "to").replace("(", "").replace(")", "")


def validation_data(source: str, output_dir: Path) -> Path:
    """A parquet folder whose ``train`` split is the train split less its last 1/VALIDATION_FRACTION and whose
    ``validation`` split is that last part, written once into ``<output_dir>/validation_data/``. Models train
    on the first rows, so the quick profile's teachers and students see the same images as in the table; the
    test split is never read."""
    target = output_dir / "validation_data"
    files = {split: target / f"{split}.parquet" for split in ("train", "validation")}
    if all(path.is_file() for path in files.values()):
        return target
    target.mkdir(parents=True, exist_ok=True)
    train = load_image_dataset(source).train
    held_out = len(train) // VALIDATION_FRACTION
    parts = {"train": range(len(train) - held_out), "validation": range(len(train) - held_out, len(train))}
    for split, rows in parts.items():
        partial = files[split].with_suffix(f".{os.getpid()}.part")  # another process may be writing it too
        train.select(rows).to_parquet(str(partial))
        os.replace(partial, files[split])
    return target


@dataclass(frozen=True)
class PlannedRun:
    """One student run of the benchmark: its part (``tuning``, ``table`` or ``ablation``), what it trains (a
    ``variant`` names a TUNING setting or an ABLATIONS entry), where it goes and how logs and ``missing``
    name it."""

    part: str
    pair: str
    method: str
    seed: int
    directory: Path
    label: str
    variant: str | None = None
    method_config: dict | None = None

    @property
    def validation(self) -> bool:
        return self.part == "tuning"

    @property
    def record(self) -> tuple:
        """Where results.json keeps this run (keys into it; a run list is searched by seed)."""
        if self.part == "table":
            return ("pairs", self.pair, "methods", self.method, "runs", self.seed)
        if self.part == "tuning":
            return ("tuning", self.pair, self.method, self.variant)
        return ("ablation", self.pair, self.variant)


def planned_runs(profile: Profile, output_dir: Path, pairs, seeds, methods, parts) -> list[PlannedRun]:
    """The runs ``parts`` selects, in the order they are trained: the validation screen, then the table seed by
    seed (so that an interrupted benchmark has whole seeds), then the ablation."""
    first_seed = profile.seeds[0]
    runs = [
        PlannedRun(
            "tuning",
            pair,
            method,
            first_seed,
            _tuning_dir(output_dir, pair, method, setting),
            f"{pair} {method} {setting} seed {first_seed} (validation)",
            setting,
            method_config or None,
        )
        for pair in (pairs if "tuning" in parts else ())
        for method, settings in TUNING.items()
        if method in methods and pair in TUNING_PAIRS.get(method, PAIRS)
        for setting, method_config in settings.items()
    ]
    runs += [
        PlannedRun("table", pair, method, seed, _run_dir(output_dir, pair, method, seed), f"{pair} {method} seed {seed}")
        for seed in (seeds if "table" in parts else ())
        for pair in pairs
        for method in methods
    ]
    runs += [
        PlannedRun(
            "ablation",
            pair,
            ABLATED_METHOD,
            first_seed,
            _ablation_dir(output_dir, pair, variant),
            f"{pair} {ABLATED_METHOD} {variant} seed {first_seed}",
            variant,
            ABLATIONS[variant],
        )
        for pair in (pairs if "ablation" in parts else ())
        for variant in ABLATIONS
    ]
    return runs


def recorded(record: dict | None, keys: tuple) -> dict | None:
    """A run's summary as ``record`` (an earlier results.json of the same profile and schedule) keeps it: run
    folders are not kept in git, so a fresh clone resumes from the committed results.json. A run list is
    searched by seed."""
    entry = record
    for key in keys:
        if isinstance(entry, list):
            entry = next((run for run in entry if run["seed"] == key), None)
        elif isinstance(entry, dict):
            entry = entry.get(key)
        if entry is None:
            return None
    return entry


def previous_results(output_dir: Path, profile: Profile) -> dict | None:
    """The results.json already in ``output_dir`` when it was written for the same schedule, else None."""
    results_file = output_dir / "results.json"
    if not results_file.is_file():
        return None
    previous = json.loads(results_file.read_text())
    return previous if previous.get("schedule", {}) | {"bf16": None} == schedule(profile) | {"bf16": None} else None


def pending_runs(profile: Profile, options: argparse.Namespace) -> list[PlannedRun]:
    """The runs ``options`` selects (default: all) that neither a run folder nor the results.json already in
    ``--output_dir`` holds."""
    record = previous_results(options.output_dir, profile)
    selected = planned_runs(
        profile,
        options.output_dir,
        options.pairs or list(PAIRS),
        options.seeds if options.seeds is not None else list(profile.seeds),
        options.methods or benchmark_methods(),
        options.parts,
    )
    if options.ablations:
        selected = [run for run in selected if run.part != "ablation" or run.variant in options.ablations]
    if options.settings:
        selected = [run for run in selected if run.part != "tuning" or run.variant in options.settings]
    return [run for run in selected if _finished(run.directory) is None and recorded(record, run.record) is None]


def run_benchmark(profile: Profile, options: argparse.Namespace, models: dict[str, dict]) -> None:
    """Train the pending runs, and the teachers only when one of them needs its teacher."""
    output_dir: Path = options.output_dir
    pending = pending_runs(profile, options)

    def data(source: str, train_samples: int | None, validation: bool = False) -> DataArguments:
        return DataArguments(
            source,
            eval_split="validation" if validation else None,
            max_train_samples=train_samples,
            max_eval_samples=profile.eval_samples,
            overwrite_output_dir=True,
        )

    for role in sorted({PAIRS[run.pair][0] for run in pending if method_class(run.method).requires_teacher}):
        run_once(
            _teacher_dir(output_dir, role),
            f"teacher {role}",
            profile,
            data(options.data, profile.teacher_train_samples),
            ModelArguments(student=models[role]["spec"]),
            method=TEACHER_METHOD,
            seed=0,
            num_train_epochs=profile.teacher_epochs,
        )
    for run in pending:
        teacher_role, student_role = PAIRS[run.pair]
        source = str(validation_data(options.data, output_dir)) if run.validation else options.data
        run_once(
            run.directory,
            run.label,
            profile,
            data(source, profile.train_samples, run.validation),
            ModelArguments(student=models[student_role]["spec"], teacher=str(_teacher_dir(output_dir, teacher_role))),
            method=run.method,
            method_config=run.method_config,
            seed=run.seed,
            num_train_epochs=profile.epochs,
        )


def _finished(directory: Path) -> dict | None:
    results_file = directory / "results.json"
    return json.loads(results_file.read_text()) if results_file.exists() else None


def collect_results(profile_name: str, profile: Profile, options: argparse.Namespace, models: dict[str, dict]) -> dict:
    """The benchmark's results.json from every finished run under ``output_dir`` (several processes may have
    trained parts of it) and, for runs whose folder is gone, the results.json already there; the runs of the
    profile not finished yet are listed in ``missing``."""
    output_dir: Path = options.output_dir
    record = previous_results(output_dir, profile)
    teachers, pairs, ablation, tuning, missing = {}, {}, {}, {}, []
    for role in sorted({teacher for teacher, _ in PAIRS.values()}):
        results = _finished(_teacher_dir(output_dir, role))
        if results is not None:
            teachers[role] = _run_summary(results, dir=shown_path(_teacher_dir(output_dir, role)))
        elif (kept := recorded(record, ("teachers", role))) is not None:
            teachers[role] = kept
        else:
            missing.append(f"teacher {role}")
    runs = planned_runs(profile, output_dir, list(PAIRS), profile.seeds, benchmark_methods(), BENCHMARK_PARTS)
    for run in runs:
        results = _finished(run.directory)
        if results is not None:
            summary = _run_summary(results, seed=run.seed, dir=shown_path(run.directory))
        else:
            summary = recorded(record, run.record)
        if summary is None:
            missing.append(run.label)
            continue
        if run.method_config:  # the flags as this version spells them
            summary["options"] = run.method_config
        if run.part == "tuning":
            tuning.setdefault(run.pair, {}).setdefault(run.method, {})[run.variant] = summary
        elif run.part == "ablation":
            ablation.setdefault(run.pair, {})[run.variant] = summary
        else:
            pairs.setdefault(run.pair, {}).setdefault(run.method, []).append(summary)
    return {
        "profile": profile_name,
        "data": shown_path(options.data),
        "schedule": schedule(profile),
        "machines": _machines(record),
        "models": {role: model | {"spec": shown_path(model["spec"])} for role, model in models.items()},
        "teachers": teachers,
        "pairs": {
            pair: {
                "teacher": PAIRS[pair][0],
                "student": PAIRS[pair][1],
                "teacher_top1_range": _taught_by(rows, teachers[PAIRS[pair][0]]),
                "methods": {method: _method_row(method_runs) for method, method_runs in rows.items()},
            }
            for pair, rows in pairs.items()
            if PAIRS[pair][0] in teachers
        },
        "ablation": ablation,
        "tuning": tuning,
        "missing": missing,
    }


def _taught_by(rows: dict[str, list[dict]], teacher: dict) -> list[float]:
    """The lowest and highest top-1 of the teachers the pair's runs learned from, as they recorded it (a teacher
    retrained for some runs, on another machine, is not the others'); the teacher's own results.json when no run
    recorded one."""
    values = [run["teacher_top1"] for method_runs in rows.values() for run in method_runs if "teacher_top1" in run]
    return [min(values), max(values)] if values else [teacher["top1"]] * 2


def _machines(record: dict | None) -> list[dict]:
    """The machines the collected runs trained on: those ``record`` names (runs kept from it), then this one."""
    # A record written before runs listed their machines names one, as "machine".
    machines = [] if record is None else list(record.get("machines") or [record["machine"]])
    here = machine_info()
    if all((machine["cpu"], machine["gpu"]) != (here["cpu"], here["gpu"]) for machine in machines):
        machines.append(here)
    return machines


def _method_row(runs: list[dict]) -> dict:
    """A method's runs on a pair and their mean and std per measure."""
    keys = ("top1", "top5", "train_seconds", "assistant_top1")
    return {"runs": runs, **{key: _summary([run[key] for run in runs]) for key in keys if key in runs[0]}}


def schedule(profile: Profile) -> dict:
    return {
        "train_samples": profile.train_samples,
        "teacher_train_samples": profile.teacher_train_samples,
        "eval_samples": profile.eval_samples,
        "epochs": profile.epochs,
        "teacher_epochs": profile.teacher_epochs,
        "seeds": list(profile.seeds),
        "batch_size": profile.batch_size,
        "max_steps": profile.max_steps,
        **asdict(profile.schedule),
        "bf16": profile.bf16 and torch.cuda.is_available(),
    }


# ---- the budget of a profile, projected from timed steps ----


def _forward_images_per_s(spec: str, image_size: int, batch_size: int, id2label: dict) -> float:
    model = load_classifier(spec, id2label).eval()
    images = torch.randn(batch_size, 3, image_size, image_size)
    with torch.inference_mode():
        model(pixel_values=images)
        start = time.perf_counter()
        model(pixel_values=images)
    return batch_size / (time.perf_counter() - start)


def estimate_profile(profile: Profile, options: argparse.Namespace) -> dict:
    """Project ``profile``'s wall time on this machine's CPU, run by run (see the module docstring).

    A run costs ``steps x step time`` (the median of two timed ``DistillationTrainer`` steps at the
    profile's batch size, after one warm-up) ``+ images seen / pipeline rate`` (decoding and both
    views in the training process, as ``dataloader_num_workers=0`` does) ``+ eval images x (1 / student
    forward + 1 / teacher forward + 1 / pipeline rate) + RUN_OVERHEAD_S``. Both views are decoded
    even for runs without a teacher, so the pipeline terms are upper bounds.
    """
    data = load_image_dataset(options.data)
    models = write_model_dirs(profile, options.output_dir / "estimate" / "models")
    forward = {
        role: _forward_images_per_s(model["spec"], model["image_size"], 2 * profile.batch_size, data.id2label)
        for role, model in models.items()
    }
    num_eval = min(profile.eval_samples or len(data.eval), len(data.eval))

    def project(label: str, teacher: str, student: str, method: str, train_samples: int | None, epochs: float):
        print(f"[estimate] {label} ...", file=sys.stderr, flush=True)
        pair = ModelPair(teacher=models[teacher]["spec"], student=models[student]["spec"])
        settings = StepSettings(
            pair=pair,
            dataset=options.data,
            id2label=data.id2label,
            threads=torch.get_num_threads(),
            batch_size=profile.batch_size,
            warmup=1,
            steps=2,
            image_size=models[student]["image_size"],
            teacher_image_size=models[teacher]["image_size"],
            pipeline_batches=3,
        )
        step_s = measure_step(StepRow(label, pair, method=method), settings)["median_step_s"]
        pipeline = measure_pipeline(settings, num_workers=0)["images_per_s"]
        num_train = min(train_samples or len(data.train), len(data.train))
        steps = math.ceil(num_train / profile.batch_size) * math.ceil(epochs)
        forwards = 1 / forward[student] + (1 / forward[teacher] if method_class(method).requires_teacher else 0)
        run = {
            "run": label,
            "step_s": step_s,
            "steps": steps,
            "pipeline_s": steps * profile.batch_size / pipeline,
            "eval_and_setup_s": num_eval * (forwards + 1 / pipeline) + RUN_OVERHEAD_S,
        }
        return run | {"total_s": steps * step_s + run["pipeline_s"] + run["eval_and_setup_s"]}

    teachers = [
        project(f"teacher {role}", role, role, TEACHER_METHOD, profile.teacher_train_samples, profile.teacher_epochs)
        for role in sorted({teacher for teacher, _ in PAIRS.values()})
    ]
    methods = benchmark_methods()
    students = {
        (pair, method): project(f"{pair} {method}", teacher, student, method, profile.train_samples, profile.epochs)
        for pair, (teacher, student) in PAIRS.items()
        for method in methods
    }
    planned = planned_runs(profile, options.output_dir, list(PAIRS), profile.seeds, methods, BENCHMARK_PARTS)
    return {
        "schedule": schedule(profile),
        "models": {role: model | {"spec": shown_path(model["spec"])} for role, model in models.items()},
        "runs": teachers + list(students.values()),
        # Teachers are trained once; every planned run (a seed of the table, a screened setting, an ablation
        # variant) costs about one run of its method on its pair.
        "total_s": sum(run["total_s"] for run in teachers)
        + sum(students[run.pair, run.method]["total_s"] for run in planned),
    }


def estimate_table(estimate: dict) -> str:
    lines = [
        "| run | s/step | steps | input pipeline (s) | eval + set-up (s) | total (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in estimate["runs"]:
        lines.append(
            f"| {row['run']} | {row['step_s']:.3f} | {row['steps']} | {row['pipeline_s']:.0f} "
            f"| {row['eval_and_setup_s']:.0f} | {row['total_s'] / 60:.1f} |"
        )
    lines.append(f"| **all** | | | | | **{estimate['total_s'] / 60:.1f}** |")
    return "\n".join(lines) + "\n"


# ---- the report ----


PEER_NOTES = {  # methods that are another library's recipe, and the test that shows it
    "kd": "`kd` computes timm's `LogitDistillationTask` loss (T=4, weights 1 and 1)",
    "feature_kd": "`feature_kd` timm's `FeatureDistillationTask` loss (pooled pre-logits MSE through a learned "
    "projection, weight 5)",
}


def _methods(results: dict) -> list[str]:
    """The methods with at least one finished run, in the benchmark's order."""
    present = {method for pair in results["pairs"].values() for method in pair["methods"]}
    return [method for method in benchmark_methods() if method in present]


def _cell(row: dict | None, key: str, seeds: int, bold: bool = False) -> str:
    """``mean ± std`` over the finished seeds, with their count when some are missing."""
    if row is None or key not in row:
        return "-"
    summary, done = row[key], len(row["runs"])
    text = f"{100 * summary['mean']:.2f}" + (f" ± {100 * summary['std']:.2f}" if done > 1 else "")
    text = f"**{text}**" if bold else text
    return text + (f" ({done}/{seeds} seeds)" if done < seeds else "")


def _length(sched: dict, samples: int | None, epochs: float) -> str:
    """How long a model trained: epochs over how many images (or the step cap of the smoke profile)."""
    images = f"{samples:,}" if samples else "all 50,000"
    if sched["max_steps"] > 0:
        return f"{sched['max_steps']} steps on {images} images"
    return f"{epochs:g} epoch{'s' if epochs != 1 else ''} on {images} images"


def _training_minutes(results: dict) -> float:
    """Training time of the teachers and of every run, the ablation and the validation screen included
    (resumed benchmarks count the reused runs too)."""
    seconds = sum(teacher["train_seconds"] for teacher in results["teachers"].values())
    for pair in results["pairs"].values():
        seconds += sum(run["train_seconds"] for row in pair["methods"].values() for run in row["runs"])
    seconds += sum(run["train_seconds"] for variants in results.get("ablation", {}).values() for run in variants.values())
    for methods in results.get("tuning", {}).values():
        seconds += sum(run["train_seconds"] for settings in methods.values() for run in settings.values())
    return seconds / 60


def _params(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def _link(path: Path, start: Path) -> str | None:
    """``path`` relative to ``start`` when both lie in the repository (a README link), else None."""
    path, start = path.resolve(), start.resolve()
    return os.path.relpath(path, start) if path.is_relative_to(REPO) and start.is_relative_to(REPO) else None


def _teacher_cell(top1_range: list[float]) -> str:
    low, high = (f"{100 * value:.2f}" for value in top1_range)
    return low if low == high else f"{low}-{high}"


def _hardware(machine: dict) -> str:
    """``cpu (AMD EPYC, 2 cores)`` or ``cuda (NVIDIA H100)``."""
    detail = machine["gpu"] or f"{machine['cpu']}, {machine['cpu_count']} cores"
    return f"{machine['device']} ({detail})"


def markdown_table(results: dict, chart: str | None = None) -> str:
    """The README region: settings, one row per pair, one column per method, FBT's assistant F."""
    methods = _methods(results)
    sched, models = results["schedule"], results["models"]
    seeds = len(sched["seeds"])
    hardware = " and ".join(map(_hardware, results["machines"]))
    evaluation = f"{sched['eval_samples']:,}" if sched["eval_samples"] else "all 10,000"
    baselines = [m for m in methods if m != "fbt"]
    peers = [note for method, note in PEER_NOTES.items() if method in methods]
    lines = [
        f"Top-1 accuracy (%) on CIFAR-10 ({evaluation} test images), models from scratch, profile "
        f"`{results['profile']}`: students {_length(sched, sched['train_samples'], sched['epochs'])}, teachers "
        f"{_length(sched, sched['teacher_train_samples'], sched['teacher_epochs'])}; batch {sched['batch_size']}, "
        f"AdamW lr {sched['learning_rate']:g}, cosine; "
        f"{seeds} seed{'s' if seeds > 1 else ''}{' (mean ± std)' if seeds > 1 else ''}; every method at hf_cakd's "
        f"default flags, `none` is the student trained alone"
        + (f"; {' and '.join(peers)} (tests/test_timm_peers.py)" if peers else "")
        + f". F is FBT's assistant, evaluated like the student. Trained on {hardware}, "
        f"{_training_minutes(results):.0f} min of training in all. Reproduce: `{COMMAND}` "
        "(`--profile full` on a GPU; see benchmarks/accuracy/run.py).",
        "",
        "| pair | teacher -> student | teacher | " + " | ".join(methods) + " | fbt - best other | F (fbt) |",
        "| --- | --- | ---: |" + " ---: |" * len(methods) + " ---: | ---: |",
    ]
    for name, pair in results["pairs"].items():
        teacher, student = models[pair["teacher"]], models[pair["student"]]
        rows = pair["methods"]
        means = {m: rows[m]["top1"]["mean"] for m in methods if m in rows}
        best = max(means.values())
        cells = [_cell(rows.get(m), "top1", seeds, bold=means.get(m) == best) for m in methods]
        others = [means[m] for m in baselines if m in means]
        gain = f"{100 * (means['fbt'] - max(others)):+.2f}" if "fbt" in means and others else "-"
        lines.append(
            f"| {name} | {teacher['name']} ({_params(teacher['params'])}, {teacher['image_size']} px) -> "
            f"{student['name']} ({_params(student['params'])}, {student['image_size']} px) "
            f"| {_teacher_cell(pair['teacher_top1_range'])} | " + " | ".join(cells) + f" | {gain} | "
            + _cell(rows.get("fbt"), "assistant_top1", seeds) + " |"
        )
    lines += [
        "",
        "Training time per run (minutes, mean over seeds):",
        "",
        "| pair | " + " | ".join(methods) + " |",
        "| --- |" + " ---: |" * len(methods),
    ]
    for name, pair in results["pairs"].items():
        minutes = [
            f"{pair['methods'][m]['train_seconds']['mean'] / 60:.1f}" if m in pair["methods"] else "-" for m in methods
        ]
        lines.append(f"| {name} | " + " | ".join(minutes) + " |")
    if results.get("ablation"):
        lines += ["", *ablation_table(results)]
    if results.get("tuning"):
        lines += ["", *tuning_table(results)]
    if results.get("missing"):
        lines += ["", f"Not finished yet ({len(results['missing'])} runs): " + ", ".join(results["missing"]) + "."]
    if chart:
        lines += ["", f"![Top-1 per pair and method]({chart})"]
    return "\n".join(lines) + "\n"


def ablation_table(results: dict) -> list[str]:
    """fbt with one part off against full fbt, both at the profile's first seed."""
    first_seed = results["schedule"]["seeds"][0]
    lines = [
        f"Ablation of `{ABLATED_METHOD}` (seed {first_seed} only; differences under about one point are within "
        "a seed's noise): student top-1 (%), change against full fbt at the same seed, F's top-1.",
        "",
        "| pair | full fbt | " + " | ".join(ABLATIONS) + " |",
        "| --- | ---: |" + " ---: |" * len(ABLATIONS),
    ]
    for pair, variants in results["ablation"].items():
        full_runs = results["pairs"].get(pair, {}).get("methods", {}).get(ABLATED_METHOD, {}).get("runs", [])
        full = next((run for run in full_runs if run["seed"] == first_seed), None)
        cells = []
        for variant in ABLATIONS:
            run = variants.get(variant)
            if run is None:
                cells.append("-")
                continue
            change = f" ({100 * (run['top1'] - full['top1']):+.2f})" if full else ""
            assistant = f", F {100 * run['assistant_top1']:.2f}" if "assistant_top1" in run else ""
            cells.append(f"{100 * run['top1']:.2f}{change}{assistant}")
        full_cell = f"{100 * full['top1']:.2f}, F {100 * full['assistant_top1']:.2f}" if full else "-"
        lines.append(f"| {pair} | {full_cell} | " + " | ".join(cells) + " |")
    return lines


def tuning_table(results: dict) -> list[str]:
    """The screened settings on the validation split, one row per method and setting, the best per pair bold;
    F's top-1 beside FBT's student."""
    first_seed = results["schedule"]["seeds"][0]
    pairs = list(results["tuning"])
    lines = [
        f"Validation screen (seed {first_seed}; students trained as in the table, evaluated on the last "
        f"1/{VALIDATION_FRACTION} of the train split, on which no student trains; the table runs "
        "each method's default): student top-1 (%).",
        "",
        "| method | setting | " + " | ".join(pairs) + " | mean |",
        "| --- | --- |" + " ---: |" * (len(pairs) + 1),
    ]
    for method, settings in TUNING.items():
        best = {
            pair: max((run["top1"] for run in results["tuning"][pair].get(method, {}).values()), default=None)
            for pair in pairs
        }
        for setting, options in settings.items():
            runs = [results["tuning"][pair].get(method, {}).get(setting) for pair in pairs]
            cells = [
                "-"
                if run is None
                else (f"**{100 * run['top1']:.2f}**" if run["top1"] == best[pair] else f"{100 * run['top1']:.2f}")
                + (f", F {100 * run['assistant_top1']:.2f}" if "assistant_top1" in run else "")
                for pair, run in zip(pairs, runs)
            ]
            mean = f"{100 * statistics.fmean(run['top1'] for run in runs):.2f}" if all(runs) else "-"
            flags = ": " + " ".join(f"`--{key} {value}`" for key, value in options.items()) if options else " (default)"
            lines.append(f"| {method} | {setting}{flags} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def plot(results: dict, path: Path) -> None:
    """Grouped bars: one group per pair, one bar per method, a dashed line at the teacher's top-1."""
    plt = pyplot()
    methods = _methods(results)
    pairs = list(results["pairs"].items())
    seeds = len(results["schedule"]["seeds"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.2 + 2.4 * len(pairs), 4.2))
    for i, method in enumerate(methods):
        offsets = [p + (i - (len(methods) - 1) / 2) * width for p in range(len(pairs))]
        rows = [pair["methods"].get(method) for _, pair in pairs]
        means = [100 * row["top1"]["mean"] if row else float("nan") for row in rows]
        errors = [100 * row["top1"]["std"] if row else 0.0 for row in rows] if seeds > 1 else None
        bars = ax.bar(offsets, means, width, yerr=errors, capsize=3, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    for p, (_, pair) in enumerate(pairs):
        teacher = 100 * max(pair["teacher_top1_range"])
        ax.hlines(teacher, p - 0.45, p + 0.45, colors="black", linestyles="--", label="teacher" if p == 0 else None)
        ax.annotate(f"{teacher:.1f}", (p + 0.45, teacher), xytext=(2, 0), textcoords="offset points", fontsize=7)
    ax.set_xticks(range(len(pairs)), [name.replace("_", " ") for name, _ in pairs])
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"CIFAR-10, profile {results['profile']}" + (f", mean ± std of {seeds} seeds" if seeds > 1 else ""))
    ax.legend(ncols=len(methods) + 1, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.28))
    ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, output_dir: Path, readme: Path | None) -> str:
    chart = output_dir / "accuracy.png"
    plot(results, chart)
    readme_table = markdown_table(results, chart=_link(chart, readme.parent)) if readme else None
    return write_table(output_dir, markdown_table(results, chart=chart.name), readme, README_REGION, readme_table)


# ---- the command line ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="quick: 2-core CPU, about 5 h, 3 seeds; full: one GPU, 3 seeds; smoke: tests the script, times quick.",
    )
    parser.add_argument(
        "--data",
        default=str(LOCAL_CIFAR10) if LOCAL_CIFAR10.is_dir() else HUB_CIFAR10,
        help=f"CIFAR-10 parquet directory, or a Hub dataset id (default: {LOCAL_CIFAR10} when it exists, else "
        f"{HUB_CIFAR10}).",
    )
    parser.add_argument("--output_dir", type=Path, help="Default: benchmarks/accuracy/<profile>.")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), help="Train only these pairs (default: all).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Train only these seeds (default: the profile's).")
    parser.add_argument(
        "--methods", nargs="+", choices=benchmark_methods(), help="Train only these methods (default: all)."
    )
    parser.add_argument(
        "--ablations", nargs="+", choices=list(ABLATIONS), help="Train only these ablation variants (default: all)."
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=sorted({setting for settings in TUNING.values() for setting in settings}),
        help="Train only these settings of the validation screen (default: all).",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=BENCHMARK_PARTS,
        default=list(BENCHMARK_PARTS),
        help="tuning: the screened settings (TUNING) on the validation split, first seed; table: every method x "
        "seed; ablation: fbt with one part off, first seed (default: all three).",
    )
    parser.add_argument("--report_only", action="store_true", help="Chart, table and README from results.json.")
    parser.add_argument(
        "--collect_only",
        action="store_true",
        help="Gather the finished runs under --output_dir into results.json, then report; train nothing.",
    )
    parser.add_argument("--readme", type=Path, help="Where the table goes (default: README.md, not for smoke).")
    parser.add_argument("--no_readme", action="store_true", help="Leave README.md alone.")
    options = parser.parse_args(argv)
    options.output_dir = options.output_dir or REPO / "benchmarks" / "accuracy" / options.profile
    if options.readme is None and not options.no_readme and options.profile != "smoke":
        options.readme = REPO / "README.md"
    if options.no_readme:
        options.readme = None
    if not options.report_only and Path(options.data).is_dir() and not Path(options.data, "train.parquet").is_file():
        parser.error(f"--data {options.data} holds no train.parquet: pass the CIFAR-10 parquet directory.")
    return options


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    if options.report_only:
        results = read_results(options.output_dir)
    else:
        setup_logging()
        options.output_dir.mkdir(parents=True, exist_ok=True)
        profile = PROFILES[options.profile]
        models = write_model_dirs(profile, options.output_dir / "models")
        if not options.collect_only:
            run_benchmark(profile, options, models)
        results = collect_results(options.profile, profile, options, models)
        if options.profile == "smoke":
            estimate = estimate_profile(PROFILES[ESTIMATED_PROFILE], options)
            results[f"{ESTIMATED_PROFILE}_estimate"] = estimate
        write_results(options.output_dir, results)
    print(write_report(results, options.output_dir, options.readme))
    estimate = results.get(f"{ESTIMATED_PROFILE}_estimate")
    if estimate:
        print(f"Projected wall time of --profile {ESTIMATED_PROFILE} on this machine:\n")
        print(estimate_table(estimate))
    return results

