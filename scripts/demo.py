#!/usr/bin/env python
"""The README's main job: a real cross-architecture distillation on the embedded CIFAR-10 subset.

A ResNet teacher (trained on the full CIFAR-10, shipped in demo_data/models) teaches a ViT
student built from scratch, with FBT, on 5,000 training images; both are evaluated on the 1,000
test images. Takes a few minutes on a 2-core CPU. Extra arguments are passed to distill.py
(for example ``--method kd`` or ``--num_train_epochs 2``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import distill  # scripts/distill.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = [
    "--teacher", str(ROOT / "demo_data/models/resnet-teacher-cifar10"),
    "--student", str(ROOT / "demo_data/models/vit-student-config"),
    "--dataset", str(ROOT / "demo_data/cifar10"),
    "--method", "fbt",
    "--output_dir", str(ROOT / "outputs/demo"),
    "--overwrite_output_dir",
    "--num_train_epochs", "10",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "250",
    "--learning_rate", "1e-3",
    "--weight_decay", "0.05",
    "--warmup_steps", "80",
    "--lr_scheduler_type", "cosine",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--logging_steps", "20",
    "--report_to", "none",
    "--use_cpu",
    "--seed", "0",
]


def main(extra: list[str]) -> None:
    start = time.perf_counter()
    results = distill.main(DEMO_ARGS + extra)
    minutes = (time.perf_counter() - start) / 60
    metrics = results["metrics"]
    print()
    print(f"hf_cakd demo: {results['method']} distillation, {results['families']['teacher']} teacher -> "
          f"{results['families']['student']} student, {minutes:.1f} min")
    for role in ("teacher", "student"):
        print(f"  {role:8s} top-1 {100 * metrics[role]['top1']:5.2f}%   top-5 {100 * metrics[role]['top5']:5.2f}%")
    print(f"  student saved to {ROOT / 'outputs/demo'} (loads with AutoModelForImageClassification)")


if __name__ == "__main__":
    main(sys.argv[1:])
