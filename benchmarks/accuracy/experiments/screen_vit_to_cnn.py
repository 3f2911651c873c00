"""Screen FBT's options on the accuracy benchmark's ``vit_to_cnn`` pair, on a validation split.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.experiments.screen_vit_to_cnn \
        --deadline 15:40

The issue "FBT must earn its place", point 4: which of FBT's options help a CNN student? Options are
chosen on images the benchmark never tests on, so that the test split stays clean for the benchmark.

**Split.** A parquet folder (``--work_dir``/data, default ``/tmp/screen-vit-to-cnn/data``) whose
``train.parquet`` is rows ``[0, 20,000)`` of CIFAR-10's train split (teacher: all of them; students: the
first ``--train_samples``) and whose ``test.parquet`` is rows ``[45,000, 50,000)`` of the *train* split:
the validation images. CIFAR-10's test split is never read.

**Models and schedule**, as ``python -m benchmarks.accuracy --profile quick`` builds them: a
transformers ViT teacher (patch 4, width 128, 6 layers, 4 heads, MLP x2; 32 px) trained with
``method none`` for ``--teacher_epochs`` on the 20,000 rows (cached in ``--work_dir``/teacher and reused);
a MobileNetV2 x0.5 student (32 px), ``--epochs`` on ``--train_samples`` rows; batch 128, AdamW lr 1e-3,
weight decay 0.05, cosine, 5% warm-up, seed 0, no data-loading workers, one torch thread.

**Runs**, in this order (most informative first, so that a cut-off still says something):
``none`` with the benchmark's student (transformers' ``classifier_dropout_prob`` 0.8), ``none`` with
dropout 0.2; the better of the two student configs (when it wins by more than ``--dropout_margin``
points; else the benchmark's) is used by every later run; then ``kd``, ``ofa``, ``fbt``, fbt with each
option alone (deep supervision 1,2,3; assistant warm-up over half of the steps; same-label InfoNCE
mask; InfoNCE on pre-logits), OFA's published recipe, fbt with the CE gate, and the combination of
every fbt option that beat plain fbt. No run starts after ``--deadline`` (HH:MM, local time).

**Outputs.** Each run's ``results.json`` is copied to ``--out``/<run>.json (default
``benchmarks/accuracy/screen/``) and ``--out``/summary.json lists every run's settings, validation top-1 of
the student and of the assistant F (fbt), and wall time. A run whose JSON exists there is reused.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import MobileNetV2Config, ViTConfig, ViTImageProcessor
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
)

from benchmarks.common import REPO, Schedule, machine_info, setup_logging, shown_path, training_arguments
from hf_cakd.methods import method_class
from hf_cakd.pipeline import DataArguments, ModelArguments, distill

CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"
TEACHER_ROWS = (0, 20_000)
VALIDATION_ROWS = (45_000, 50_000)
BATCH_SIZE = 128
SEED = 0
BENCHMARK_DROPOUT = 0.8  # transformers' MobileNetV2Config default, which the benchmark keeps
LOW_DROPOUT = 0.2


def build_split(source: Path, target: Path) -> Path:
    """train.parquet: train rows [0, 20,000); test.parquet: train rows [45,000, 50,000) (validation)."""
    if (target / "train.parquet").is_file() and (target / "test.parquet").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(source / "train.parquet")
    pq.write_table(table.slice(TEACHER_ROWS[0], TEACHER_ROWS[1] - TEACHER_ROWS[0]), target / "train.parquet")
    pq.write_table(table.slice(VALIDATION_ROWS[0], VALIDATION_ROWS[1] - VALIDATION_ROWS[0]), target / "test.parquet")
    return target


def save_model_dir(config, directory: Path, mean, std) -> str:
    """A config-only directory as the benchmark writes it (config + 32 px processor)."""
    config.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=list(mean), image_std=list(std)).save_pretrained(
        directory
    )
    return str(directory)


def teacher_config() -> ViTConfig:
    return ViTConfig(
        image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=6, num_attention_heads=4, intermediate_size=256
    )


def student_config(dropout: float) -> MobileNetV2Config:
    return MobileNetV2Config(depth_multiplier=0.5, image_size=32, classifier_dropout_prob=dropout)


def run(output_dir: Path, data: DataArguments, models: ModelArguments, method: str, epochs: float, method_config=None):
    if not method_class(method).requires_teacher:
        models = ModelArguments(student=models.student)
    args = training_arguments(
        output_dir,
        method=method,
        method_config=method_config or None,
        schedule=Schedule(),
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=2 * BATCH_SIZE,
        dataloader_num_workers=0,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        use_cpu=True,
        seed=SEED,
        num_train_epochs=epochs,
    )
    results = distill(models, data, args)
    gc.collect()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=CIFAR10)
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/screen-vit-to-cnn"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "accuracy" / "screen")
    parser.add_argument("--train_samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--teacher_epochs", type=float, default=8)
    parser.add_argument("--deadline", help="HH:MM local time: no run starts after it.")
    parser.add_argument("--dropout_margin", type=float, default=1.0)
    parser.add_argument("--only", help="Comma-separated run names: run just these (in screening order).")
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    setup_logging()
    deadline = None
    if options.deadline:
        hour, minute = map(int, options.deadline.split(":"))
        deadline = datetime.datetime.now().replace(hour=hour, minute=minute, second=0, microsecond=0)

    work, out = options.work_dir, options.out
    out.mkdir(parents=True, exist_ok=True)
    split = build_split(options.data, work / "data")
    teacher_spec = save_model_dir(teacher_config(), work / "models" / "vit_teacher", *map(tuple, (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD)))
    student_specs = {
        d: save_model_dir(student_config(d), work / "models" / f"cnn_student_dropout{d}", IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
        for d in (BENCHMARK_DROPOUT, LOW_DROPOUT)
    }
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {"runs": {}}
    summary.update(
        split={
            "train": f"CIFAR-10 train rows [{TEACHER_ROWS[0]}, {TEACHER_ROWS[1]}) (students: the first {options.train_samples})",
            "validation": f"CIFAR-10 train rows [{VALIDATION_ROWS[0]}, {VALIDATION_ROWS[1]})",
        },
        schedule={
            "train_samples": options.train_samples,
            "epochs": options.epochs,
            "teacher_train_samples": TEACHER_ROWS[1] - TEACHER_ROWS[0],
            "teacher_epochs": options.teacher_epochs,
            "batch_size": BATCH_SIZE,
            "seed": SEED,
            "torch_threads": 1,
            **Schedule().__dict__,
        },
        machine=machine_info("cpu"),
    )

    def save_summary():
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")

    # Teacher: trained once on all 20,000 rows, reused while its results.json exists.
    teacher_dir = work / "teacher"
    if not (teacher_dir / "results.json").is_file():
        print("[screen] teacher ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        run(teacher_dir, DataArguments(str(split), overwrite_output_dir=True), ModelArguments(student=teacher_spec), "none", options.teacher_epochs)
        summary["teacher_wall_s"] = round(time.perf_counter() - start, 1)
    teacher_results = json.loads((teacher_dir / "results.json").read_text())
    summary["teacher"] = {
        "top1": teacher_results["metrics"]["student"]["top1"],
        "train_seconds": teacher_results["train_seconds"],
    }
    shutil.copy(teacher_dir / "results.json", out / "teacher.json")
    save_summary()
    print(f"[screen] teacher validation top-1 {100 * summary['teacher']['top1']:.2f}%", file=sys.stderr, flush=True)

    steps = math.ceil(options.train_samples / BATCH_SIZE) * math.ceil(options.epochs)
    student_data = DataArguments(str(split), max_train_samples=options.train_samples, overwrite_output_dir=True)
    only = set(options.only.split(",")) if options.only else None

    def top1(name):
        row = summary["runs"].get(name)
        return None if row is None else row["top1"]

    def screen(name: str, method: str, config: dict | None = None, dropout: float | None = None) -> None:
        if only is not None and name not in only:
            return
        if dropout is None:
            dropout = summary.get("student_dropout", BENCHMARK_DROPOUT)
        if name in summary["runs"] and (out / f"{name}.json").is_file():
            print(f"[screen] {name}: reusing", file=sys.stderr, flush=True)
            return
        if deadline and datetime.datetime.now() > deadline:
            print(f"[screen] {name}: skipped, past the deadline", file=sys.stderr, flush=True)
            return
        print(f"[screen] {name}: {method} {config or {}} dropout {dropout} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results = run(
            work / "runs" / name,
            student_data,
            ModelArguments(student=student_specs[dropout], teacher=str(teacher_dir)),
            method,
            options.epochs,
            config,
        )
        wall = round(time.perf_counter() - start, 1)
        shutil.copy(work / "runs" / name / "results.json", out / f"{name}.json")
        metrics = results["metrics"]
        summary["runs"][name] = {
            "method": method,
            "method_config": config or {},
            "student_dropout": dropout,
            "top1": metrics["student"]["top1"],
            "top5": metrics["student"]["top5"],
            "assistant_top1": metrics.get("assistant", {}).get("top1"),
            "teacher_top1": metrics.get("teacher", {}).get("top1"),
            "train_seconds": results["train_seconds"],
            "wall_seconds": wall,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        save_summary()
        assistant = summary["runs"][name]["assistant_top1"]
        print(
            f"[screen] {name}: top-1 {100 * metrics['student']['top1']:.2f}%"
            + (f", F {100 * assistant:.2f}%" if assistant is not None else "")
            + f" ({wall:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    screen("none", "none", dropout=BENCHMARK_DROPOUT)
    screen("none_dropout0.2", "none", dropout=LOW_DROPOUT)
    if "student_dropout" not in summary and top1("none") is not None and top1("none_dropout0.2") is not None:
        gain = 100 * (top1("none_dropout0.2") - top1("none"))
        summary["student_dropout"] = LOW_DROPOUT if gain > options.dropout_margin else BENCHMARK_DROPOUT
        summary["student_dropout_reason"] = f"none with dropout 0.2 minus none with 0.8: {gain:+.2f} points"
        save_summary()
        print(f"[screen] student dropout for the later runs: {summary['student_dropout']} ({gain:+.2f})", file=sys.stderr)

    fbt_options = {
        "fbt_ds123": {"fbt_deep_supervision": "1,2,3"},
        "fbt_warmup": {"fbt_assistant_warmup_steps": steps // 2},
        "fbt_mask": {"infonce_mask_same_label": True},
        "fbt_prelogits": {"infonce_feature": "pre_logits"},
    }
    screen("kd", "kd")
    screen("ofa", "ofa")
    screen("fbt", "fbt")
    for name, config in fbt_options.items():
        screen(name, "fbt", config)
    screen("ofa_published", "ofa", {"ofa_stages": "1,2,3,4", "ofa_loss_weight": 0.1})
    fbt_options["fbt_gate"] = {"fbt_assistant_gate": "ce"}
    screen("fbt_gate", "fbt", fbt_options["fbt_gate"])

    # The combination of every option that beat plain fbt.
    if top1("fbt") is not None:
        winners = [n for n, _ in fbt_options.items() if top1(n) is not None and top1(n) > top1("fbt")]
        if len(winners) >= 2:
            combined = {k: v for n in winners for k, v in fbt_options[n].items()}
            summary["combination"] = {"of": winners, "method_config": combined}
            save_summary()
            screen("fbt_best_combination", "fbt", combined)
        else:
            summary["combination"] = {"of": winners, "note": "fewer than two options beat plain fbt: nothing to combine"}
            save_summary()
    print(json.dumps({n: r["top1"] for n, r in summary["runs"].items()}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
