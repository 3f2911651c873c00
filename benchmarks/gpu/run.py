"""Ready for a GPU: what only an accelerator measures, in one command of at most eight minutes.

    python -m benchmarks.gpu                     # on a CUDA machine: benchmarks/gpu/results.json and table.md
    python -m benchmarks.gpu --profile smoke --data DIR --output_dir DIR   # the same, tiny, on a CPU (the test)
    python -m benchmarks.gpu --report_only       # table.md again from results.json

Needs ``python -m benchmarks.gpu.prepare``'s folder (``--data``, default ``benchmarks/gpu/data``) and an
environment with the project's requirements; the procedure on a lent GPU machine (what to carry, the time
limit, what to commit) is benchmarks/README.md, "GPU check". Nothing is downloaded: ``python -m benchmarks.gpu``
switches the Hub and datasets offline.

What is measured (profile ``gpu``; ``smoke`` is the same on tiny models at 32 px, batch 8, a few steps)
----------------------------------------------------------------------------------------------------------
**Training steps.** The headline pair at 224 px, built from configs (a ViT-B/16 teacher, a ResNet-18 student;
``benchmarks.common.HEADLINE_MODELS``, written to ``<output_dir>/models``), in bf16 autocast at batch 128. One
row per registered method (``hf_cakd.methods.METHODS``, in ``benchmark_methods`` order), each in a fresh
process: the ``DistillationTrainer``'s ``training_step`` and its optimizer's step, prepared by its Accelerator
as ``Trainer.train`` prepares them (``benchmarks.common.measure_step``, as ``benchmarks.speed`` does in
float32); images/s from the median of 20 steps after 3 warm-up, peak ``torch.cuda.max_memory_allocated``, ratios
to ``kd``, and the FLOPs counted on one more step (achieved TFLOP/s). One more row runs ``kd`` with
``--torch_compile`` (inductor); its warm-up time is mostly compiling.

**Input pipeline.** Photo-sized JPEGs (``benchmarks.photos``: longer side 500 px, JPEG quality 90) through
the library's training data path with the device views (``DistillationTransform.for_models(...,
views_on_device=True)``, ``DistillationCollator``, pinned memory; ``benchmarks.common.measure_pipeline``) with
as many DataLoader workers as the library's default on an accelerator (the cores, less one). Its images/s
against the ``kd`` step's, the device's half of the views (``DeviceViews`` on one batch) added to the step:
a ratio of at least 1 means the GPU is fed.

**A real run through the CLI.** ``hf-cakd distill`` (``benchmarks.gpu.distill_cli``: ``scripts/distill.py``
that also writes its peak memory) of the headline pair on the CIFAR-10 rows of ``--data``, both models at 224
px, the default method, ``--bf16``, batch 128: a first run of 200 steps that saves ``checkpoint-200``, then the
same command with ``--max_steps 300 --resume_from_checkpoint last``. Each must exit 0; recorded: wall time,
training images/s (steps x batch / the run's ``train_seconds``), peak memory, the DataLoader it used, and
whether the student loads with ``AutoModelForImageClassification``.

**Time budget** (``--time_budget``, default 420 s of work). Parts run in the order above, the compiled row
before the CLI run; a part starts only when the time left covers its own minimum and the later parts';
otherwise it is skipped, saying why. The CLI run takes fewer steps when the measured steps say 300 would
not fit. Every figure carries the device's name; after each part, results.json and table.md are rewritten,
and a part that fails records its error, so a failure or a kill keeps what came before.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import ResNetConfig, ViTConfig, ViTImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from benchmarks.common import (
    HEADLINE_MODELS,
    HEADLINE_SIZE,
    REPO,
    ModelPair,
    Schedule,
    StepRow,
    StepSettings,
    add_ratios,
    benchmark_methods,
    call_in_fresh_process,
    fmt,
    machine_info,
    measure_pipeline,
    measure_step,
    read_results,
    shown_path,
    saved_with_weights,
    write_model_dirs,
    write_results,
    write_table,
)
from benchmarks.gpu.distill_cli import distill_recording_peak
from benchmarks.gpu.prepare import DATA_DIR, DATASET_NAME
from benchmarks.photos import make_photo_set
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME, CHECKPOINT_PREFIX
from hf_cakd.data import load_image_dataset
from hf_cakd.training.training_args import accelerator_loader_workers

OUTPUT_DIR = REPO / "benchmarks" / "gpu"
COMPILED_ROW = "kd, torch_compile"
HANG_S = 150  # an uncompiled row (its pair built, 24 steps) or the pipeline part taking longer is stuck: stopped

TINY_SIZE = 32
# The headline pair's families at 32 px, small enough for a CPU: a ViT teacher whose 2x2 token grid is the
# ResNet student's stage-3 grid, as ViT-B/16's 14x14 is ResNet-18's at 224 px.
TINY_MODELS = {
    "vit-tiny": (
        ViTConfig(
            image_size=TINY_SIZE, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=64,
        ),
        ViTImageProcessor(size={"height": TINY_SIZE, "width": TINY_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
    ),
    "resnet-tiny": (
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic"),
        ViTImageProcessor(
            size={"height": TINY_SIZE, "width": TINY_SIZE}, image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD
        ),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """What one ``--profile`` measures, and the least time each part needs (for the budget)."""

    device: str
    models: dict = field(repr=False)  # {name: (config, image processor)}: teacher, then student
    image_size: int
    batch_size: int
    steps: int  # timed steps per row
    warmup: int
    compile_backend: str  # --torch_compile_backend of the compiled row
    pipeline_batches: int  # timed batches; 0: four per DataLoader worker (at least 30)
    cli_steps: tuple[int, int]  # the first run's steps (its checkpoint), then the resumed run's total
    cli_eval_samples: int
    fresh_processes: bool  # each row, the pipeline and each CLI run in a process of its own (peak memory, timeouts)
    time_budget: float
    minimum_s: dict = field(default_factory=dict)  # part -> the least seconds it needs: row, pipeline, compiled, cli


PROFILES = {
    "gpu": Profile(
        device="cuda", models=HEADLINE_MODELS, image_size=HEADLINE_SIZE, batch_size=128, steps=20, warmup=3,
        compile_backend="inductor", pipeline_batches=0, cli_steps=(200, 300), cli_eval_samples=1000,
        fresh_processes=True, time_budget=420, minimum_s={"row": 20, "pipeline": 40, "compiled": 90, "cli": 90},
    ),
    "smoke": Profile(
        device="cpu", models=TINY_MODELS, image_size=TINY_SIZE, batch_size=8, steps=2, warmup=1,
        compile_backend="eager", pipeline_batches=3, cli_steps=(2, 3), cli_eval_samples=8,
        fresh_processes=False, time_budget=300,
    ),
}  # fmt: skip
LATER_PARTS = {"row": ("pipeline", "compiled", "cli"), "pipeline": ("compiled", "cli"), "compiled": ("cli",), "cli": ()}


class TimeBudget:
    """Seconds of work left, and whether a part may start without taking the later parts' minimum time."""

    def __init__(self, seconds: float, minimum_s: dict):
        self.seconds, self.minimum_s, self.start = seconds, minimum_s, time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    def for_part(self, part: str) -> float:
        """The seconds ``part`` may take: what is left less the later parts' minimum."""
        return self.left() - sum(self.minimum_s.get(later, 0) for later in LATER_PARTS[part])

    def refusal(self, part: str) -> str | None:
        """Why ``part`` is skipped, or None when it may start."""
        allowed, needed = self.for_part(part), self.minimum_s.get(part, 0)
        if allowed > max(needed, 0):
            return None
        return f"skipped: {max(self.left(), 0):.0f} s of the {self.seconds:.0f} s budget left, {needed} s needed beside the later parts'"


# ---- the parts ----


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


def _call(profile: Profile, function, *args, timeout: float):
    return call_in_fresh_process(function, *args, timeout=timeout) if profile.fresh_processes else function(*args)


def _step_settings(profile: Profile, pair: ModelPair, id2label: dict) -> StepSettings:
    return StepSettings(
        pair=pair,
        dataset="",  # the pipeline part names its photos
        id2label=id2label,
        device=profile.device,
        batch_size=profile.batch_size,
        steps=profile.steps,
        warmup=profile.warmup,
        image_size=profile.image_size,
        teacher_image_size=profile.image_size,
        bf16=True,
    )


def measure_rows(rows: list[StepRow], settings: StepSettings, profile: Profile, budget: TimeBudget, part: str) -> list[dict]:
    """Each row timed (:func:`measure_step`), or its error, or why the budget skipped it."""
    measured = []
    for row in rows:
        print(f"[steps] {row.name} ...", file=sys.stderr, flush=True)
        result = {"name": row.name, "method": row.method, "training_args": row.training_args}
        if refusal := budget.refusal(part):
            result["skipped"] = refusal
        else:
            try:
                timeout = budget.for_part(part) if row.compiled else min(budget.for_part(part), HANG_S)
                result |= _call(profile, measure_step, row, settings, timeout=timeout)
            except Exception as err:  # a method that fails on this device must not cost the others' figures
                result["error"] = _error(err)
        measured.append(result)
    return measured


def _photo_pipeline(settings: StepSettings, workers: int) -> dict:
    """Photos made here, then their images/s through the training data path with the device views."""
    with tempfile.TemporaryDirectory() as root:
        photos = (settings.pipeline_batches + 2) * settings.batch_size  # the first batch is not timed
        start = time.perf_counter()
        make_photo_set(Path(root), photos, settings.seed, workers=min(os.cpu_count() or 1, max(1, photos // 128)))
        made_s = time.perf_counter() - start
        measured = measure_pipeline(settings, workers, dataset=root, views_on_device=True)
    return {"photos": photos, "photos_made_s": made_s, **measured}


def measure_fed(settings: StepSettings, kd: dict | None, profile: Profile, budget: TimeBudget) -> dict:
    """The input pipeline's images/s against the kd step's (with the device's half of the views)."""
    workers = accelerator_loader_workers()
    batches = profile.pipeline_batches or max(30, 4 * workers)  # whole rounds of the workers, after their first
    settings = replace(settings, pipeline_batches=batches)
    measured = _call(profile, _photo_pipeline, settings, workers, timeout=min(budget.for_part("pipeline"), HANG_S))
    if kd is not None and "median_step_s" in kd:
        views_s = measured.get("device_views_ms_per_batch", 0.0) / 1e3
        measured["kd_step_images_per_s"] = kd["images_per_s"]
        measured["kd_step_with_views_images_per_s"] = settings.batch_size / (kd["median_step_s"] + views_s)
        measured["ratio_to_kd_step"] = measured["images_per_s"] / measured["kd_step_with_views_images_per_s"]
    return measured


def _cli_argv(profile: Profile, models: tuple[str, str], data: Path, output_dir: Path, steps: tuple[int, int], resume: bool):
    teacher, student = models
    schedule = {f"--{name}": str(value) for name, value in Schedule().training_kwargs().items()}
    argv = [
        "--teacher", teacher, "--student", student, "--dataset", str(data / DATASET_NAME), "--output_dir", str(output_dir),
        "--student_image_size", str(profile.image_size), "--teacher_image_size", str(profile.image_size), "--bf16",
        "--per_device_train_batch_size", str(profile.batch_size), "--per_device_eval_batch_size", str(profile.batch_size),
        "--max_eval_samples", str(profile.cli_eval_samples), "--save_steps", str(steps[0]),
        "--max_steps", str(steps[1] if resume else steps[0]), "--logging_steps", str(max(1, steps[0] // 4)),
        "--seed", "0", "--disable_tqdm", "true", *[item for pair in schedule.items() for item in pair],
    ]  # fmt: skip
    if profile.device == "cpu":
        argv.append("--use_cpu")
    return argv + (["--resume_from_checkpoint", "last"] if resume else [])


def _run_cli(argv: list[str], work: Path, name: str, timeout: float, fresh_process: bool) -> dict:
    """One ``hf-cakd distill``: in its own process (group), stopped with its loader workers past ``timeout``;
    or, without ``fresh_process``, in this one (no log kept, no timeout)."""
    peak_file, log_file = work / f"{name}-peak.json", work / f"{name}.log"
    start = time.perf_counter()
    if fresh_process:
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "benchmarks.gpu.distill_cli", str(peak_file), *argv]
        with open(log_file, "w") as log:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                exit_code = process.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                exit_code = None
            finally:  # past its time, or this process is being stopped (see __main__): the run's group goes too
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    else:
        exit_code = distill_recording_peak(peak_file, argv)
    result = {"exit_code": exit_code, "wall_s": time.perf_counter() - start}
    lines = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    result["dataloader"] = next((line.split(": ", 1)[-1] for line in lines if "DataLoader on " in line), None)
    if exit_code != 0:
        result["error"] = f"stopped after {timeout:.0f} s" if exit_code is None else f"exit code {exit_code}"
        result["log_tail"] = lines[-25:]
    if peak_file.is_file():
        result |= json.loads(peak_file.read_text())
    return result


def _cli_steps(profile: Profile, rows: list[dict], budget: TimeBudget) -> tuple[int, int]:
    """The profile's steps, or fewer in the same proportion when the slowest measured step says they would not
    fit in the time left (two process starts, evaluations and saves: the part's minimum)."""
    first, total = profile.cli_steps
    step_s = max((row["median_step_s"] for row in rows if "median_step_s" in row), default=0.0)
    room = budget.for_part("cli") - profile.minimum_s.get("cli", 0)
    if step_s and total * step_s * 1.25 > room:  # the loop's own work beside the step: loading, logging
        scale = max(room, 0) / (total * step_s * 1.25)
        first, total = max(10, round(first * scale)), max(15, round(total * scale))
    return first, total


def measure_cli(profile: Profile, models: tuple[str, str], data: Path, rows: list[dict], budget: TimeBudget) -> dict:
    """A first run that saves a checkpoint, the same command resumed from it; what each took, and the student."""
    from transformers import AutoModelForImageClassification

    steps = _cli_steps(profile, rows, budget)
    result = {"steps": list(steps), "batch_size": profile.batch_size, "image_size": profile.image_size, "runs": []}
    with tempfile.TemporaryDirectory() as work:
        work, output_dir = Path(work), Path(work) / "run"
        teacher = saved_with_weights(models[0], load_image_dataset(str(data / DATASET_NAME)).id2label, work / "teacher")
        models = (str(teacher), models[1])
        for name, resume in (("first", False), ("resumed", True)):
            print(f"[cli] {name} run ...", file=sys.stderr, flush=True)
            argv = _cli_argv(profile, models, data, output_dir, steps, resume)
            run = {"name": name, "argv": [shown_path(arg) for arg in argv]}
            # The first run leaves the resumed one half the part's minimum.
            timeout = budget.left() - (0 if resume else profile.minimum_s.get("cli", 0) / 2)
            run |= _run_cli(argv, work, name, timeout, profile.fresh_processes)
            result["runs"].append(run)
            if run["exit_code"] != 0:
                return result | {"error": f"the {name} run: {run['error']}"}
            written = json.loads((output_dir / "results.json").read_text())
            run_steps = steps[0] if name == "first" else steps[1] - steps[0]
            run |= {
                "steps": run_steps,
                "train_seconds": written["train_seconds"],
                "images_per_s": run_steps * profile.batch_size / written["train_seconds"],
                "train_loss": written["train_loss"],
                "mixed_precision": written["environment"]["mixed_precision"],
                "resumed_from": shown_path(written["plan"]["resume_from_checkpoint"] or "") or None,
            }
            result["method"] = written["method"]
            result["student_top1"] = written["metrics"].get("student", {}).get("top1")
            if name == "first":
                checkpoint = output_dir / f"{CHECKPOINT_PREFIX}{steps[0]}"
                run["checkpoint_complete"] = (checkpoint / CHECKPOINT_COMPLETE_NAME).is_file()
        result["resumed_from_first_checkpoint"] = str(result["runs"][1]["resumed_from"]).endswith(
            f"{CHECKPOINT_PREFIX}{steps[0]}"
        )
        student = AutoModelForImageClassification.from_pretrained(output_dir)
        size = profile.image_size
        with torch.no_grad():
            logits = student(torch.zeros(1, 3, size, size)).logits
        result["student_loads"] = {"class": type(student).__name__, "logits_shape": list(logits.shape)}
    return result


# ---- the run ----


def _device_name(machine: dict) -> str:
    return machine["gpu"] or f"{machine['cpu']} (CPU)"


def run(options: argparse.Namespace, profile: Profile) -> dict:
    budget = TimeBudget(options.time_budget or profile.time_budget, profile.minimum_s)
    machine = machine_info(profile.device)
    device = _device_name(machine)
    results = {
        "device": device,
        "machine": machine,
        "profile": options.profile,
        "time_budget_s": budget.seconds,
        "settings": {key: value for key, value in asdict(profile).items() if key != "models"},
    }

    def save(part: str | None = None, measured: dict | None = None) -> None:
        if part is not None:
            results[part] = {"device": device, **measured}
        results["errors"] = errors(results)
        results["seconds"] = budget.used()
        write_outputs(options.output_dir, results)

    teacher, student = write_model_dirs(options.output_dir / "models", profile.models)
    id2label = load_image_dataset(str(options.data / DATASET_NAME)).id2label
    pair = ModelPair(teacher, student)
    settings = _step_settings(profile, pair, id2label)
    results["pair"] = {"teacher": shown_path(teacher), "student": shown_path(student)}
    results["data"] = shown_path(options.data / DATASET_NAME)
    save()

    rows = [StepRow(method, pair, method=method) for method in benchmark_methods()]
    measured_rows = measure_rows(rows, settings, profile, budget, "row")
    _save_rows(save, measured_rows, device)
    kd = next((row for row in measured_rows if row["name"] == "kd"), None)
    save("pipeline", _part("pipeline", budget, lambda: measure_fed(settings, kd, profile, budget)))
    measured_rows += measure_rows([_compiled_row(pair, profile)], settings, profile, budget, "compiled")
    _save_rows(save, measured_rows, device)
    save("cli", _part("cli", budget, lambda: measure_cli(profile, (teacher, student), options.data, measured_rows, budget)))
    return results


def _part(part: str, budget: TimeBudget, measure) -> dict:
    """``measure()``, or why the budget skips it, or its error (the later parts still run)."""
    print(f"[{part}] ...", file=sys.stderr, flush=True)
    if refusal := budget.refusal(part):
        return {"skipped": refusal}
    try:
        return measure()
    except Exception as err:
        traceback.print_exc()
        return {"error": _error(err)}


def _compiled_row(pair: ModelPair, profile: Profile) -> StepRow:
    args = {"torch_compile": True, "torch_compile_backend": profile.compile_backend}
    return StepRow(COMPILED_ROW, pair, method="kd", training_args=args)


def _save_rows(save, rows: list[dict], device: str) -> None:
    for row in rows:
        row["device"] = device
        if row.get("gflops_per_step") and row.get("median_step_s"):
            row["achieved_tflops"] = row["gflops_per_step"] / row["median_step_s"] / 1e3
    add_ratios([row for row in rows if "median_step_s" in row], "kd")
    save("steps", {"rows": rows})


def errors(results: dict) -> dict[str, str]:
    """Every part's and row's error, by name (a summary of what failed)."""
    found = {f"steps: {row['name']}": row["error"] for row in results.get("steps", {}).get("rows", []) if "error" in row}
    return found | {part: results[part]["error"] for part in ("pipeline", "cli") if "error" in results.get(part, {})}


def write_outputs(output_dir: Path, results: dict) -> None:
    write_results(output_dir, results)
    write_table(output_dir, markdown_table(results), None, "")


# ---- the report ----


def markdown_table(results: dict) -> str:
    machine, settings, device = results["machine"], results["settings"], results["device"]
    pair = results.get("pair", {})
    lines = [
        f"GPU check on **{device}** ({machine['cpu_count']} CPU cores; torch {machine['torch']}, transformers "
        f"{machine['transformers']}, accelerate {machine['accelerate']}, timm {machine['timm']}), profile "
        f"`{results['profile']}`, {results.get('seconds', 0):.0f} s of a {results['time_budget_s']:.0f} s budget. "
        "Generated by `python -m benchmarks.gpu` (benchmarks/gpu/run.py says what is measured).",
        "",
        f"Training step, teacher `{pair.get('teacher')}` -> student `{pair.get('student')}` at "
        f"{settings['image_size']} px, bf16 autocast, batch {settings['batch_size']}: median of {settings['steps']} "
        f"steps after {settings['warmup']} warm-up; memory = peak `torch.cuda.max_memory_allocated` (on a CPU: "
        "the growth of the process's peak RSS).",
        "",
        "| method | device | step (ms) | images/s | images/s vs kd | peak memory (MiB) | memory vs kd "
        "| GFLOP / step | achieved TFLOP/s | warm-up (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results.get("steps", {}).get("rows", []):
        if "median_step_s" not in row:
            lines.append(f"| {row['name']} | {device} | {_problem(row)} |" + " |" * 7)
            continue
        speed = 1 / row["step_ratio_to_kd"] if row.get("step_ratio_to_kd") else None
        lines.append(
            f"| {row['name']} | {row['device']} | {fmt(row['median_step_s'] * 1e3, 1)} | {fmt(row['images_per_s'], 0)} "
            f"| {fmt(speed, 2, 'x')} | {fmt(row['peak_memory_mb'], 0)} | {fmt(row.get('memory_ratio_to_kd'), 2, 'x')} "
            f"| {fmt(row.get('gflops_per_step'), 0)} | {fmt(row.get('achieved_tflops'), 0)} | {fmt(row.get('warmup_s'), 1)} |"
        )
    lines += ["", *pipeline_lines(results.get("pipeline")), "", *cli_lines(results.get("cli"), results.get("data"))]
    return "\n".join(lines) + "\n"


def _problem(part: dict) -> str:
    return part.get("skipped") or f"error: {part.get('error')}".replace("|", "\\|").replace("\n", " ")


def pipeline_lines(measured: dict | None) -> list[str]:
    if measured is None:
        return []
    lines = [
        "Input pipeline: photo-sized JPEGs (longer side 500 px) through `DistillationTransform` with the device "
        "views, `DistillationCollator` and a pinned `DataLoader`; the kd step's rate includes the device's half "
        "of the views. Fed: the pipeline delivers at least what the step takes.",
        "",
        "| device | workers | photos | pipeline images/s | device views (ms / batch) | kd step images/s "
        "| kd step + views images/s | pipeline / step | fed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    if "images_per_s" not in measured:
        return lines + [f"| {measured['device']} | {_problem(measured)} |" + " |" * 7]
    ratio = measured.get("ratio_to_kd_step")
    lines.append(
        f"| {measured['device']} | {measured['num_workers']} | {measured['photos']} | {fmt(measured['images_per_s'], 0)} "
        f"| {fmt(measured.get('device_views_ms_per_batch'), 1)} | {fmt(measured.get('kd_step_images_per_s'), 0)} "
        f"| {fmt(measured.get('kd_step_with_views_images_per_s'), 0)} | {fmt(ratio, 2, 'x')} "
        f"| {'-' if ratio is None else ('yes' if ratio >= 1 else 'no')} |"
    )
    return lines


def cli_lines(measured: dict | None, data: str | None) -> list[str]:
    if measured is None:
        return []
    lines = [
        f"A real run through `hf-cakd distill` (method {measured.get('method', '?')}, bf16, batch "
        f"{measured.get('batch_size')}, {measured.get('image_size')} px, the CIFAR-10 rows of `{data}`): "
        "a first run that saves a checkpoint, then the same command resumed from it. Images/s: the run's steps x "
        "batch / its `train_seconds`; wall: the whole command.",
        "",
        "| run | device | exit code | steps | wall (s) | train (s) | images/s | peak memory (MiB) | DataLoader |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in measured.get("runs", []):
        lines.append(
            f"| {run['name']} | {measured['device']} | {run['exit_code']} | {run.get('steps', '-')} | {fmt(run['wall_s'], 0)} "
            f"| {fmt(run.get('train_seconds'), 1)} | {fmt(run.get('images_per_s'), 0)} | {fmt(run.get('peak_memory_mb'), 0)} "
            f"| {run.get('dataloader') or '-'} |"
        )
    if "student_loads" in measured:
        loads = measured["student_loads"]
        lines += [
            "",
            f"Resumed from the first run's checkpoint: {'yes' if measured['resumed_from_first_checkpoint'] else 'no'}. "
            f"The student loads with `AutoModelForImageClassification`: {loads['class']}, logits {loads['logits_shape']}.",
        ]
    elif "runs" not in measured or not measured["runs"]:
        lines.append(f"| - | {measured['device']} | {_problem(measured)} |" + " |" * 6)
    else:
        lines += ["", _problem(measured)]
    return lines


# ---- the command line ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="gpu",
        help="gpu: the headline pair at 224 px on a CUDA device; smoke: tiny models on a CPU, a few steps.",
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="The folder python -m benchmarks.gpu.prepare wrote.")
    parser.add_argument("--output_dir", type=Path, default=OUTPUT_DIR, help="Where results.json and table.md go.")
    parser.add_argument(
        "--time_budget", type=float, help="Seconds of work (default: 420 for gpu); parts that would not fit are skipped."
    )
    parser.add_argument(
        "--fresh_processes",
        action="store_true",
        help="Each row, the pipeline and each CLI run in a process of its own, as the gpu profile always does "
        "(the smoke profile runs them in this one).",
    )
    parser.add_argument("--report_only", action="store_true", help="Regenerate table.md from results.json.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if options.report_only:
        results = read_results(options.output_dir)
        write_outputs(options.output_dir, results)
        return results
    profile = PROFILES[options.profile]
    if options.fresh_processes:
        profile = replace(profile, fresh_processes=True)
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --profile {options.profile} needs a CUDA device; on a CPU, --profile smoke runs it small.")
    if not (options.data / DATASET_NAME).is_dir():
        raise SystemExit(
            f"error: {options.data / DATASET_NAME} does not exist: run python -m benchmarks.gpu.prepare, and carry "
            f"{shown_path(options.data)} beside the working tree (benchmarks/README.md, 'GPU check')."
        )
    results = run(options, profile)
    print((options.output_dir / "table.md").read_text())
    return results
