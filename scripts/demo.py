#!/usr/bin/env python
"""The README's main job: a real cross-architecture distillation on the embedded CIFAR-10 subset.

A ResNet teacher (trained on the full CIFAR-10, shipped in demo_data/models) teaches a ViT
student built from scratch, with FBT, on 5,000 training images; both are evaluated on the 1,000
test images. Takes a few minutes on a 2-core CPU. ``--method`` picks another registered method
(at its defaults), ``--num_train_epochs`` shortens or lengthens the run.

The summary ends with the distilled student beside the same student trained alone (``--method
none``) with the same flags: the measurement committed in demo_data/student_alone.json when it was
taken with these flags, else a run of its own (into ``<output_dir>-student-alone``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from hf_cakd.cli import distill_main
from hf_cakd.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
STUDENT_ALONE = REPO / "demo_data" / "student_alone.json"
ALONE = "none"  # the method that trains the student alone


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--method", default="fbt", choices=sorted(METHODS))
    parser.add_argument("--num_train_epochs", type=float, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs" / "demo")
    parser.add_argument("--license", help="The student's license, in its card (a Hub license id; default: other).")
    return parser.parse_args(argv)


def training_flags(options: argparse.Namespace, method: str) -> dict[str, str]:
    """The demo's flags for ``method``, paths relative to the repository (the output folder apart)."""
    return {
        "student": "demo_data/models/vit-student-config",
        "teacher": "demo_data/models/resnet-teacher-cifar10",
        "dataset": "demo_data/cifar10",
        "method": method,
        "num_train_epochs": f"{options.num_train_epochs:g}",
        "seed": str(options.seed),
        "learning_rate": "1e-3",
        "weight_decay": "0.05",
        "warmup_steps": "80",
        "lr_scheduler_type": "cosine",
        "per_device_train_batch_size": "64",
        "per_device_eval_batch_size": "250",
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": "20",
        "report_to": "none",
        "use_cpu": "true",
    }


def run(options: argparse.Namespace, method: str, output_dir: Path) -> dict:
    flags = training_flags(options, method)
    for path_flag in ("student", "teacher", "dataset"):
        flags[path_flag] = str(REPO / flags[path_flag])
    flags.update(output_dir=str(output_dir), overwrite_output_dir="true", license=options.license)
    return distill_main([item for name, value in flags.items() if value is not None for item in (f"--{name}", value)])


def student_alone(options: argparse.Namespace) -> tuple[dict[str, float], str]:
    """The student trained alone with the demo's flags, top-1 and top-5, and where the numbers come from."""
    committed = json.loads(STUDENT_ALONE.read_text(encoding="utf-8"))
    if committed["flags"] == training_flags(options, ALONE):
        return committed["student"], f"measured before, {os.path.relpath(STUDENT_ALONE, REPO)}"
    output_dir = options.output_dir.with_name(f"{options.output_dir.name}-student-alone")
    return run(options, ALONE, output_dir)["metrics"]["student"], f"run now, {output_dir}"


def comparison(method: str, distilled: float, alone: float) -> str:
    """The summary's last line: what distillation gave the student over training it alone."""
    return (
        f"{method} distillation: the student reaches top-1 {100 * distilled:.2f}% against {100 * alone:.2f}% trained "
        f"alone with the same flags ({100 * (distilled - alone):+.2f} points)"
    )


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    start = time.perf_counter()
    results = run(options, options.method, options.output_dir)
    minutes = (time.perf_counter() - start) / 60
    metrics, families = results["metrics"], results["families"]
    alone, source = student_alone(options) if options.method != ALONE else (None, None)
    print()
    print(f"hf_cakd demo: --method {results['method']}, {families['teacher']} teacher -> {families['student']} "
          f"student, {minutes:.1f} min")  # fmt: skip
    rows = {**metrics, **({"student alone": alone} if alone else {})}
    for role, row in rows.items():  # teacher, student and, for fbt, its assistant F; the student trained alone
        print(f"  {role:13s} top-1 {100 * row['top1']:5.2f}%   top-5 {100 * row['top5']:5.2f}%")
    if alone:
        print(f"  (student alone: --method {ALONE}, the same student, data, epochs and seed; {source})")
    print(f"  student saved to {options.output_dir} (loads with AutoModelForImageClassification)")
    if alone:
        print(comparison(results["method"], metrics["student"]["top1"], alone["top1"]))
    return results


if __name__ == "__main__":
    main()
