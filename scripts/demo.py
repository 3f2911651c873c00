#!/usr/bin/env python
"""The README's main job: a real cross-architecture distillation on the embedded CIFAR-10 subset.

A ResNet teacher (trained on the full CIFAR-10, shipped in demo_data/models) teaches a ViT
student built from scratch, with FBT, on 5,000 training images; both are evaluated on the 1,000
test images. Takes a few minutes on a 2-core CPU. ``--method`` picks another registered method
(at its defaults), ``--num_train_epochs`` shortens or lengthens the run.
"""

from __future__ import annotations

import argparse
import time

from hf_cakd.benchmarking import REPO, Schedule, benchmark_methods, setup_logging, training_arguments
from hf_cakd.pipeline import DataArguments, ModelArguments, distill

OUTPUT_DIR = REPO / "outputs/demo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fbt", choices=benchmark_methods())
    parser.add_argument("--num_train_epochs", type=float, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    setup_logging()
    models = ModelArguments(
        student=str(REPO / "demo_data/models/vit-student-config"),
        teacher=str(REPO / "demo_data/models/resnet-teacher-cifar10"),
    )
    data = DataArguments(dataset=str(REPO / "demo_data/cifar10"), overwrite_output_dir=True)
    training_args = training_arguments(
        OUTPUT_DIR,
        options.method,
        schedule=Schedule(warmup=80),
        num_train_epochs=options.num_train_epochs,
        per_device_train_batch_size=64,
        per_device_eval_batch_size=250,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=20,
        disable_tqdm=False,
        use_cpu=True,
        seed=options.seed,
    )
    start = time.perf_counter()
    results = distill(models, data, training_args)
    minutes = (time.perf_counter() - start) / 60
    metrics, families = results["metrics"], results["families"]
    print()
    print(f"hf_cakd demo: {results['method']} distillation, {families['teacher']} teacher -> "
          f"{families['student']} student, {minutes:.1f} min")  # fmt: skip
    for role, row in metrics.items():  # teacher, student and, for fbt, its assistant F
        print(f"  {role:9s} top-1 {100 * row['top1']:5.2f}%   top-5 {100 * row['top5']:5.2f}%")
    print(f"  student saved to {OUTPUT_DIR} (loads with AutoModelForImageClassification)")
    return results


if __name__ == "__main__":
    main()
