"""What a profile would cost on this machine, projected from timed steps (the smoke profile's estimate)."""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from benchmarks.common import ModelPair, StepRow, StepSettings, benchmark_methods, measure_pipeline, measure_step, shown_path
from hf_cakd import load_classifier
from hf_cakd.data import load_image_dataset
from hf_cakd.methods import method_class

from .profiles import TEACHER_METHOD, Profile, schedule, write_model_dirs
from .runs import BENCHMARK_PARTS, planned_runs


RUN_OVERHEAD_S = 5  # per distill call: data, model and trainer set-up, saving (1-2 s in the smoke runs)


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
        for role in profile.teacher_roles()
    ]
    methods = benchmark_methods()
    students = {
        (pair, method): project(f"{pair} {method}", teacher, student, method, profile.train_samples, profile.epochs)
        for pair, (teacher, student) in profile.pairs.items()
        for method in methods
    }
    planned = planned_runs(profile, options.output_dir, list(profile.pairs), profile.seeds, methods, BENCHMARK_PARTS)
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
