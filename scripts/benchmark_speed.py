#!/usr/bin/env python
"""What does the assistant cost? Training-step time and peak memory of every method, in one run.

    .venv/bin/python scripts/benchmark_speed.py                 # CPU, or the GPU when there is one
    .venv/bin/python scripts/benchmark_speed.py --device cuda --batch_size 256
    .venv/bin/python scripts/benchmark_speed.py --report_only   # table.md and README from results.json

What is measured
----------------
**Methods.** One teacher -> student pair (default: the demo's ResNet teacher -> ViT student at
32 px, ``demo_data/models/*-config``; any pair via ``--teacher``/``--student``, the specs of
``hf_cakd.load_classifier``). For each of ``none, kd, fitnet, ofa, fbt`` a
:class:`~hf_cakd.DistillationTrainer` is built exactly as ``scripts/distill.py`` builds it (no
teacher for ``none``) and one *step* is the Trainer's own ``training_step(model, batch)`` (teacher
forward without gradients, student forward, the method's losses, backward) followed by the
Trainer's own optimizer (``create_optimizer``) step and ``zero_grad``. Gradient clipping and the
learning-rate schedule are left out for every row alike. All rows see the same random but fixed
batch (``--batch_size``, default 64, ``--seed``), already on the device, in float32; the step time
is the median of ``--steps`` steps after ``--warmup`` warm-up steps. Ratios are to ``kd``.

**Peak memory.** Every row runs in a fresh process (``spawn``). On CUDA: the peak of
``torch.cuda.max_memory_allocated`` over the row (weights, gradients, optimizer state,
activations; not the CUDA context). On CPU, where the torch allocator is invisible to
``tracemalloc``: the process's peak resident set size (``resource.getrusage(...).ru_maxrss``) at
the end, minus its value once the libraries are imported (so the same things plus the allocator's
slack).

**FLOPs.** One more step per row, untimed, under ``torch.utils.flop_counter.FlopCounterMode``:
the floating-point operations of its matmuls and convolutions, forward and backward. Unlike the
time, this does not depend on the machine or its load, so it separates what a method computes from
how fast this machine computes it.

**Data pipeline.** Images/s of the real input pipeline: the training split of ``--dataset``
(default ``demo_data/cifar10``) through :class:`~hf_cakd.data.DistillationTransform` with the
student's and teacher's training transforms (decode, random crop and flip, resize, normalise, two
views) and :class:`~hf_cakd.data.DistillationCollator`, in a ``torch.utils.data.DataLoader`` with
the same batch size, shuffled, for each ``--num_workers`` (0 is the Trainer's default). Timing starts
once the first batch is out, so worker start-up is excluded. Reported next to each method's step
images/s: a ratio above 1 means the pipeline outruns the step. With 0 workers the two run one after
the other, so the throughput of training is ``1 / (1/pipeline + 1/step)``.

**Peer: timm.task.** timm's ``ClassificationTask``, ``LogitDistillationTask`` and
``FeatureDistillationTask`` take timm models only (they read ``num_classes``,
``pretrained_cfg['mean'/'std']`` and call ``forward_features``/``forward_head``), so this comparison
uses one timm pair for *all* of its rows (default: timm ``resnet18`` cut to the demo teacher's
depths and widths -> timm ``vit_tiny_patch16_224`` at 32 px with the demo student's size). Our rows
wrap those very models as ``TimmWrapperForImageClassification`` (``timm:<arch>`` specs plus
``model_args``, as the CLI does) and run through the ``DistillationTrainer`` as above; the timm rows
take the bare timm models inside the same wrappers (same architecture, same initialisation) and do
``task.train(); task(x, y)['loss'].backward()``, then the same optimizer class and settings as the
Trainer's, then ``zero_grad``. Matched settings: cross-entropy weight 1, distillation weight 1, KD
temperature ``--kd_temperature``. Pairs of rows that compute the same thing:
``none`` ~ ``ClassificationTask``; ``kd`` ~ ``LogitDistillationTask`` (Hinton KD); ``fitnet
(stage 4)`` ~ ``FeatureDistillationTask`` is the nearest, not identical: timm regresses the pooled
pre-logit vector through a linear layer, ours the stage-4 map through a 1x1 convolution. timm
renormalises the student's batch for the teacher inside the step; ours gets the teacher's view from
the pipeline (``teacher_pixel_values``). ``ofa`` and ``fbt`` have no timm counterpart and are shown
for scale.

Timings depend on the machine and on what else runs on it: measure on an idle one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
METHODS = ("none", "kd", "fitnet", "ofa", "fbt")
TIMM_TASKS = ("ClassificationTask", "LogitDistillationTask", "FeatureDistillationTask")
README_REGION = "benchmark-speed"
README_SECTION = "## Benchmarks"

# The demo pair, as timm models of the same depths and widths (for the timm.task comparison).
TIMM_TEACHER = "timm:resnet18"
TIMM_TEACHER_ARGS = {"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "stem_width": 32}
TIMM_STUDENT = "timm:vit_tiny_patch16_224"
TIMM_STUDENT_ARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3, "mlp_ratio": 2.0}


# ---- one row, in its own process ----


def _peak_memory_mb(device: torch.device, rss_baseline_kib: int) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_baseline_kib) / 1024  # Linux: KiB


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fixed_batch(settings: dict, num_labels: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(settings["seed"])
    size, teacher_size, batch_size = settings["image_size"], settings["teacher_image_size"], settings["batch_size"]
    batch = {
        "pixel_values": torch.randn(batch_size, 3, size, size, generator=generator),
        "teacher_pixel_values": torch.randn(batch_size, 3, teacher_size, teacher_size, generator=generator),
        "labels": torch.randint(num_labels, (batch_size,), generator=generator),
    }
    return {name: value.to(device) for name, value in batch.items()}


def _training_args(settings: dict, method: str, output_dir: str, **overrides):
    from hf_cakd import DistillationTrainingArguments

    return DistillationTrainingArguments(
        output_dir=output_dir,
        method=method,
        per_device_train_batch_size=settings["batch_size"],
        student_image_size=settings["image_size"],
        teacher_image_size=settings["teacher_image_size"],
        kd_temperature=settings["kd_temperature"],
        use_cpu=settings["device"] == "cpu",
        seed=settings["seed"],
        report_to="none",
        disable_tqdm=True,
        **overrides,
    )


def _models(pair: dict, id2label: dict, with_teacher: bool):
    from hf_cakd import load_classifier

    student = load_classifier(pair["student"], id2label, model_args=pair.get("student_model_args"))
    teacher = None
    if with_teacher:
        teacher = load_classifier(pair["teacher"], id2label, model_args=pair.get("teacher_model_args"))
        teacher.requires_grad_(False).eval()
    return student, teacher


def _our_step(row: dict, settings: dict, batch: dict, output_dir: str):
    """The DistillationTrainer's own training_step, then its own optimizer's step."""
    from hf_cakd import DistillationTrainer

    student, teacher = _models(row["pair"], settings["id2label"], with_teacher=row["method"] != "none")
    args = _training_args(settings, row["method"], output_dir, **row.get("args", {}))
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop otherwise
    optimizer = trainer.create_optimizer()
    model = trainer.model

    def step():
        trainer.training_step(model, batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def _timm_task_step(row: dict, settings: dict, batch: dict, output_dir: str, device: torch.device):
    """timm.task on the bare timm models, with the optimizer the Trainer would create."""
    import timm.task
    from transformers import Trainer

    student, teacher = _models(row["pair"], settings["id2label"], with_teacher=row["task"] != "ClassificationTask")
    student = student.timm_model
    common = {"criterion": torch.nn.CrossEntropyLoss(), "device": device, "verbose": False}
    if row["task"] == "ClassificationTask":
        task = timm.task.ClassificationTask(student, **common)
    else:
        weights = {"task_loss_weight": 1.0, "distill_loss_weight": 1.0}
        if row["task"] == "LogitDistillationTask":
            weights["temperature"] = settings["kd_temperature"]
        task = getattr(timm.task, row["task"])(student, teacher.timm_model, **common, **weights)
    task.to(device)
    args = _training_args(settings, "none", output_dir)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    optimizer = optimizer_cls(task.trainable_module.parameters(), weight_decay=args.weight_decay, **optimizer_kwargs)
    inputs, labels = batch["pixel_values"], batch["labels"]

    def step():
        task.train()
        task(inputs, labels)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def measure_row(row: dict, settings: dict) -> dict:
    """Median step time and peak memory of one row. Runs in a fresh process."""
    # Everything imported before the memory baseline, so that it is not counted as the row's.
    import timm.task  # noqa: F401
    import transformers

    import hf_cakd  # noqa: F401

    transformers.utils.logging.set_verbosity_error()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device = torch.device(settings["device"])
    rss_baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(settings["seed"])  # every row starts from the same initial weights
    batch = _fixed_batch(settings, len(settings["id2label"]), device)
    with tempfile.TemporaryDirectory() as output_dir:
        if row["runner"] == "ours":
            step, optimizer = _our_step(row, settings, batch, output_dir)
        else:
            step, optimizer = _timm_task_step(row, settings, batch, output_dir, device)
        for _ in range(settings["warmup"]):
            step()
        _synchronize(device)
        times = []
        for _ in range(settings["steps"]):
            start = time.perf_counter()
            step()
            _synchronize(device)
            times.append(time.perf_counter() - start)
        # Once more, untimed, counting floating-point operations (matmuls and convolutions, forward
        # and backward): a machine-independent cost of the same step.
        with FlopCounterMode(display=False) as flop_counter:
            step()
    median = statistics.median(times)
    return {
        "name": row["name"],
        "runner": row["runner"],
        "median_step_s": median,
        "images_per_s": settings["batch_size"] / median,
        "peak_memory_mb": _peak_memory_mb(device, rss_baseline_kib),
        "gflops_per_step": flop_counter.get_total_flops() / 1e9,
        "step_times_s": times,
        "torch_threads": torch.get_num_threads(),
        "optimizer": f"{type(optimizer).__name__}(fused={optimizer.defaults.get('fused')})",
    }


def _in_fresh_process(row: dict, settings: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_row, row, settings).result()


# ---- the data pipeline ----


def measure_pipeline(settings: dict, num_workers: int) -> dict:
    """Images/s of load_image_dataset -> DistillationTransform -> DistillationCollator in a DataLoader."""
    from torch.utils.data import DataLoader

    from hf_cakd import load_image_processor
    from hf_cakd.data import DistillationCollator, DistillationTransform, image_transforms, load_image_dataset

    pair = settings["pair"]
    data = load_image_dataset(settings["dataset"])
    student, teacher = _models(pair, data.id2label, with_teacher=True)
    transform = DistillationTransform(
        image_transforms(student, load_image_processor(pair["student"]), train=True, image_size=settings["image_size"]),
        image_transforms(
            teacher, load_image_processor(pair["teacher"]), train=True, image_size=settings["teacher_image_size"]
        ),
        image_column=data.image_column,
        label_column=data.label_column,
    )
    loader = DataLoader(
        transform.apply_to(data.train),
        batch_size=settings["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=DistillationCollator(),
        pin_memory=settings["device"] == "cuda",
        generator=torch.Generator().manual_seed(settings["seed"]),
    )
    batches = min(settings["pipeline_batches"], len(loader) - 1)
    iterator = iter(loader)
    next(iterator)  # worker start-up and first-batch latency are not throughput
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(iterator)["labels"])
    elapsed = time.perf_counter() - start
    return {"num_workers": num_workers, "batches": batches, "images_per_s": images / elapsed}


# ---- the run ----


def machine_info(device: torch.device) -> dict:
    import timm
    import transformers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
    }


def _add_ratios(rows: list[dict], reference: str) -> None:
    by_name = {row["name"]: row for row in rows}
    ref = by_name.get(reference)
    for row in rows:
        row["step_ratio_to_kd"] = row["median_step_s"] / ref["median_step_s"] if ref else None
        row["memory_ratio_to_kd"] = row["peak_memory_mb"] / ref["peak_memory_mb"] if ref else None
        row["flops_ratio_to_kd"] = row["gflops_per_step"] / ref["gflops_per_step"] if ref else None


def _peer_rows(methods: list[str], timm_pair: dict) -> list[dict]:
    """Our methods and timm.task's on one timm pair; our FitNet on stage 4, the nearest to timm's feature task."""
    rows = []
    for method in methods:
        row = {"name": method, "runner": "ours", "method": method, "pair": timm_pair}
        if method == "fitnet":
            row |= {"name": "fitnet (stage 4)", "args": {"fitnet_stage": 4}}
        rows.append(row)
    return rows + [
        {"name": f"timm.task.{task}", "runner": "timm.task", "task": task, "pair": timm_pair} for task in TIMM_TASKS
    ]


def run(options: argparse.Namespace) -> dict:
    from hf_cakd.data import load_image_dataset

    device = torch.device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    pair = {
        "teacher": options.teacher,
        "student": options.student,
        "teacher_model_args": _json(options.teacher_model_args),
        "student_model_args": _json(options.student_model_args),
    }
    settings = {
        "device": options.device,
        "batch_size": options.batch_size,
        "steps": options.steps,
        "warmup": options.warmup,
        "seed": options.seed,
        "threads": options.threads,
        "image_size": options.image_size,
        "teacher_image_size": options.teacher_image_size or options.image_size,
        "kd_temperature": options.kd_temperature,
        "dataset": options.dataset,
        "pipeline_batches": options.pipeline_batches,
        "pair": pair,
        "id2label": load_image_dataset(options.dataset).id2label,
    }
    results = {"machine": machine_info(device), "settings": {k: v for k, v in settings.items() if k != "id2label"}}

    methods = []
    for method in options.methods:
        print(f"[methods] {method} ...", file=sys.stderr, flush=True)
        methods.append(_in_fresh_process({"name": method, "runner": "ours", "method": method, "pair": pair}, settings))
    _add_ratios(methods, "kd")
    results["methods"] = methods

    pipeline = []
    for num_workers in options.num_workers:
        print(f"[pipeline] num_workers={num_workers} ...", file=sys.stderr, flush=True)
        measured = measure_pipeline(settings, num_workers)
        measured["ratio_to_step"] = {row["name"]: measured["images_per_s"] / row["images_per_s"] for row in methods}
        pipeline.append(measured)
    results["pipeline"] = pipeline

    if not options.no_peer:
        timm_pair = {
            "teacher": options.timm_teacher,
            "student": options.timm_student,
            "teacher_model_args": _json(options.timm_teacher_model_args),
            "student_model_args": _json(options.timm_student_model_args),
        }
        peer = []
        for row in _peer_rows(options.methods, timm_pair):
            print(f"[peer] {row['name']} ...", file=sys.stderr, flush=True)
            peer.append(_in_fresh_process(row, settings))
        _add_ratios(peer, "kd")
        results["peer"] = {"pair": timm_pair, "rows": peer}
    return results


# ---- the report ----


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _relative(path: str) -> str:
    """A path under the repository as the repository sees it (the table must not name this machine)."""
    return os.path.relpath(path, REPO) if os.path.isabs(path) and Path(path).is_relative_to(REPO) else path


def _label(spec: str, model_args: dict | None) -> str:
    return f"`{_relative(spec)}`" + (f" `{json.dumps(model_args)}`" if model_args else "")


def markdown_table(results: dict) -> str:
    machine, settings = results["machine"], results["settings"]
    hardware = machine["gpu"] or f"{machine['cpu']}, {machine['cpu_count']} cores"
    memory = "peak `torch.cuda.max_memory_allocated`" if machine["gpu"] else "peak RSS growth of a fresh process"
    pair = settings["pair"]
    lines = [
        f"Training speed on {machine['device']} ({hardware}; torch {machine['torch']}, "
        f"{machine['torch_threads']} threads), batch {settings['batch_size']}, float32, "
        f"{settings['image_size']} px student / {settings['teacher_image_size']} px teacher. "
        f"Step = the `DistillationTrainer`'s `training_step` + optimizer step, median of {settings['steps']} "
        f"after {settings['warmup']} warm-up, {results['methods'][0]['optimizer']}; memory = {memory}. "
        "Generated by `scripts/benchmark_speed.py` (see its docstring for what is compared).",
        "",
        f"Teacher {_label(pair['teacher'], pair['teacher_model_args'])} -> "
        f"student {_label(pair['student'], pair['student_model_args'])}:",
        "",
        "| method | step (ms) | images/s | peak memory (MB) | GFLOP / step | step / kd | memory / kd | FLOPs / kd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["methods"]:
        lines.append(
            f"| {row['name']} | {_fmt(row['median_step_s'] * 1e3, 1)} | {_fmt(row['images_per_s'], 0)} "
            f"| {_fmt(row['peak_memory_mb'], 0)} | {_fmt(row.get('gflops_per_step'), 1)} "
            f"| {_fmt(row['step_ratio_to_kd'], 2, 'x')} | {_fmt(row['memory_ratio_to_kd'], 2, 'x')} "
            f"| {_fmt(row.get('flops_ratio_to_kd'), 2, 'x')} |"
        )
    if results.get("pipeline"):
        shown = [name for name in ("kd", "fbt") if name in results["pipeline"][0]["ratio_to_step"]]
        lines += [
            "",
            f"Data pipeline (`{_relative(settings['dataset'])}` train split, `DistillationTransform` with both models' "
            "training transforms, `DistillationCollator`, `DataLoader`); ratio above 1: the pipeline outruns the step:",
            "",
            "| num_workers | images/s | " + " | ".join(f"pipeline / {name} step" for name in shown) + " |",
            "| ---: | ---: |" + " ---: |" * len(shown),
        ]
        for row in results["pipeline"]:
            ratios = " | ".join(_fmt(row["ratio_to_step"][name], 2, "x") for name in shown)
            lines.append(f"| {row['num_workers']} | {_fmt(row['images_per_s'], 0)} | {ratios} |")
    if results.get("peer"):
        peer_pair = results["peer"]["pair"]
        teacher = _label(peer_pair["teacher"], peer_pair["teacher_model_args"])
        student = _label(peer_pair["student"], peer_pair["student_model_args"])
        lines += [
            "",
            f"Against `timm.task`, all rows on the timm pair {teacher} -> {student} "
            "(ours through `TimmWrapperForImageClassification`, timm's on the bare models):",
            "",
            "| row | step (ms) | images/s | peak memory (MB) | step / our kd | memory / our kd |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in results["peer"]["rows"]:
            name = row["name"] if row["runner"] == "timm.task" else f"ours: {row['name']}"
            lines.append(
                f"| {name} | {_fmt(row['median_step_s'] * 1e3, 1)} | {_fmt(row['images_per_s'], 0)} "
                f"| {_fmt(row['peak_memory_mb'], 0)} | {_fmt(row['step_ratio_to_kd'], 2, 'x')} "
                f"| {_fmt(row['memory_ratio_to_kd'], 2, 'x')} |"
            )
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str, region: str) -> None:
    """Put ``table`` between the ``<!-- {region}:start -->`` and ``<!-- {region}:end -->`` comments,
    adding them at the end of ``## Benchmarks`` when absent; the rest of the README is kept."""
    start, end_marker = f"<!-- {region}:start -->", f"<!-- {region}:end -->"
    text = readme.read_text()
    block = f"{start}\n{table}{end_marker}"
    if start in text and end_marker in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end_marker, 1)[1]
    else:
        if README_SECTION not in text:
            text = text.rstrip("\n") + f"\n\n{README_SECTION}\n"
        section = text.index(README_SECTION)
        next_section = text.find("\n## ", section + len(README_SECTION))
        end = len(text) if next_section == -1 else next_section + 1
        before = text[:end].rstrip("\n")
        text = before + f"\n\n{block}\n" + ("\n" + text[end:] if next_section != -1 else "")
    readme.write_text(text)


def write_report(results: dict, output_dir: Path, readme: Path | None, region: str = README_REGION) -> str:
    table = markdown_table(results)
    (output_dir / "table.md").write_text(table)
    if readme is not None:
        update_readme(readme, table, region)
    return table


def read_results(output_dir: Path) -> dict:
    """The results.json an earlier run wrote into ``output_dir`` (for ``--report_only``)."""
    results_file = output_dir / "results.json"
    if not results_file.is_file():
        raise SystemExit(
            f"--report_only: {results_file} does not exist. Run the benchmark without --report_only first, "
            "or pass the --output_dir it wrote to."
        )
    return json.loads(results_file.read_text())


# ---- the command line ----


def _json(value: str | None) -> dict | None:
    return json.loads(value) if value else None


def _csv(kind):
    return lambda value: [kind(item) for item in value.split(",") if item]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--teacher", default=str(REPO / "demo_data/models/resnet-teacher-config"))
    parser.add_argument("--student", default=str(REPO / "demo_data/models/vit-student-config"))
    parser.add_argument("--teacher_model_args", help="JSON timm.create_model kwargs for a timm: teacher.")
    parser.add_argument("--student_model_args", help="JSON timm.create_model kwargs for a timm: student.")
    parser.add_argument("--timm_teacher", default=TIMM_TEACHER, help="Teacher of the timm.task comparison.")
    parser.add_argument("--timm_student", default=TIMM_STUDENT, help="Student of the timm.task comparison.")
    parser.add_argument("--timm_teacher_model_args", default=json.dumps(TIMM_TEACHER_ARGS))
    parser.add_argument("--timm_student_model_args", default=json.dumps(TIMM_STUDENT_ARGS))
    parser.add_argument("--no_peer", action="store_true", help="Skip the timm.task comparison.")
    parser.add_argument("--methods", type=_csv(str), default=list(METHODS), help="Comma-separated; default all.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per row (the median is reported).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps before them.")
    parser.add_argument("--image_size", type=int, default=32, help="Student input resolution.")
    parser.add_argument("--teacher_image_size", type=int, help="Teacher input resolution (default: --image_size).")
    parser.add_argument("--kd_temperature", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default=str(REPO / "demo_data/cifar10"), help="For the pipeline and labels.")
    parser.add_argument("--num_workers", type=_csv(int), default=[0, 2], help="DataLoader workers to try.")
    parser.add_argument("--pipeline_batches", type=int, default=30, help="Timed batches per num_workers.")
    parser.add_argument("--output_dir", type=Path, default=Path("benchmarks/speed"))
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="Where the table is inserted.")
    parser.add_argument(
        "--readme_region",
        default=README_REGION,
        help="The table goes between <!-- REGION:start --> and <!-- REGION:end --> in --readme.",
    )
    parser.add_argument("--no_readme", action="store_true", help="Write results.json and table.md only.")
    parser.add_argument("--report_only", action="store_true", help="Regenerate the tables from results.json.")
    options = parser.parse_args(argv)
    unknown = set(options.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if options.report_only:
        results = read_results(options.output_dir)
    else:
        results = run(options)
        options.output_dir.mkdir(parents=True, exist_ok=True)
        (options.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    readme = None if options.no_readme else options.readme
    print(write_report(results, options.output_dir, readme, options.readme_region))


if __name__ == "__main__":
    main()
