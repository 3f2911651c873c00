"""What does the assistant cost? Training-step time and peak memory of every method, in one run.

    .venv/bin/python -m benchmarks.speed                 # CPU, or the GPU when there is one
    .venv/bin/python -m benchmarks.speed --device cuda --batch_size 256
    .venv/bin/python -m benchmarks.speed --report_only   # table.md and README from results.json

What is measured
----------------
**Methods.** One teacher -> student pair (default: the demo's ResNet teacher -> ViT student at
32 px, ``demo_data/models/*-config``; any pair via ``--teacher``/``--student``, the specs of
``hf_cakd.load_classifier``). For each registered method (``hf_cakd.methods.METHODS``, at its
default options; ``--kd_temperature`` for those with one) a :class:`~hf_cakd.DistillationTrainer`
is built as :func:`hf_cakd.run.pipeline.distill` builds it (no teacher for ``none``) and one *step*
is the Trainer's own ``training_step(model, batch)`` (teacher forward without gradients, student
forward, the method's losses, backward) followed by the Trainer's own optimizer
(``create_optimizer``) step and ``zero_grad``, model and optimizer prepared by the Trainer's Accelerator as
``Trainer.train`` prepares them. Gradient clipping and the learning-rate schedule
are left out for every row alike. All rows see the same random but fixed
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

**Input pipeline on photos** (``--photos N``). ``N`` JPEGs at ImageNet's typical size (longer side
500 px) made from the six real photos of ``demo_data/photos`` (random crops of 25-100 % of a photo,
mirrored half the time, JPEG quality 90), through ``DistillationTransform`` and
``DistillationCollator`` in a ``DataLoader`` without workers, batch 64, on one torch thread. Four
rows: the student's view alone and the distillation batch, with each model's view made on the CPU
(before) and with one augmented uint8 image per row whose views ``DeviceViews`` makes on the device
(after; its time per batch is reported, not counted). The rate is images per second of the process's
CPU time, i.e. per core, so other load on the machine does not count; the rows are timed in turn,
three rounds, each keeping its fastest. The projection divides the images/s a GPU sustaining
``--gpu_tflops`` runs the pair's ``kd`` step at (its FLOPs per image, as counted above) by the rate
per core. The README's table (the headline pair at 224 px)::

    python -m benchmarks.speed --pair headline --methods kd --batch_size 2 --steps 3 --warmup 1 --no_peer \
        --num_workers "" --photos 512 --output_dir benchmarks/speed/photos --readme_region benchmark-speed-photos

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

**The headline pair** (``--pair headline``): the design card's call, a ViT-B/16 teacher
(``google/vit-base-patch16-224``'s architecture) -> the CLI's default student for it, a ResNet-18, both at
224 px, built from their transformers configs (written into ``<output_dir>/models/``, random weights: cost
does not depend on them). ``--variants`` adds rows of a method at other options, e.g. fbt at the paper's
settings (its default for this CNN student halves the grid and adds OFA's branches; docs/method.md).
FLOPs and memory do not depend on the machine; on a CPU the step is timed at a small batch:

    python -m benchmarks.speed --pair headline --batch_size 2 --steps 3 --warmup 1 --no_peer --num_workers "" \
        --threads 1 --variants '{"fbt, as in the paper": ["fbt", {"fbt_transfer_paths":
            "teacher_student,teacher_assistant,assistant_student", "fbt_deep_supervision": "", "fbt_bridge_downsample": 1}],
          "fbt, as in the paper, fbt_bridge_downsample 2": ["fbt", {"fbt_transfer_paths":
            "teacher_student,teacher_assistant,assistant_student", "fbt_deep_supervision": "", "fbt_bridge_downsample": 2}],
          "fbt, fbt_bridge_downsample 1": ["fbt", {"fbt_bridge_downsample": 1}]}' \
        --output_dir benchmarks/speed/headline --readme_region benchmark-speed-headline

Timings depend on the machine and on what else runs on it: measure on an idle one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import (
    BENCHMARKS_README,
    HEADLINE_SIZE,
    REPO,
    ModelPair,
    StepRow,
    StepSettings,
    add_ratios,
    benchmark_methods,
    default_device,
    fmt,
    machine_info,
    measure_pipeline,
    measure_step_in_fresh_process,
    read_results,
    shown_path,
    write_headline_models,
    write_results,
    write_table,
)
from benchmarks.photos import PHOTO_LONGER_SIDE, make_photo_set
from hf_cakd.data import load_image_dataset

TIMM_TASKS = ("ClassificationTask", "LogitDistillationTask", "FeatureDistillationTask")
README_REGION = "benchmark-speed"
# Our rows matched with a timm task on other options than the defaults: FitNet on stage 4, timm's features.
PEER_OPTIONS = {"fitnet": ("fitnet (stage 4)", {"fitnet_stage": 4})}

# The demo pair, as timm models of the same depths and widths (for the timm.task comparison).
TIMM_TEACHER = "timm:resnet18"
TIMM_TEACHER_ARGS = {"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "stem_width": 32}
TIMM_STUDENT = "timm:vit_tiny_patch16_224"
TIMM_STUDENT_ARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3, "mlp_ratio": 2.0}


# ---- the input pipeline at 224 px on photos ----

PHOTO_BATCH_SIZE = 64
PHOTO_ROUNDS = 3  # the four rows are timed in turn this often; each keeps its fastest round


def measure_photo_pipeline(settings: StepSettings, photos: int) -> dict:
    """Images/s per core of the training input pipeline on ``photos`` JPEGs (:func:`make_photo_set`): the
    student's view alone and the distillation batch, each model's views made on the CPU (before) and on the
    device (after), in one process on one thread."""
    with tempfile.TemporaryDirectory() as root:
        dataset = str(make_photo_set(Path(root), photos, settings.seed))
        settings = replace(
            settings, dataset=dataset, batch_size=PHOTO_BATCH_SIZE, pipeline_batches=photos // PHOTO_BATCH_SIZE - 1
        )
        models = settings.pair.load(load_image_dataset(dataset).id2label)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        rows = [(views, batch) for views in ("before", "after") for batch in ("student", "distillation")]
        rounds: dict[tuple[str, str], list[dict]] = {row: [] for row in rows}
        try:
            for _ in range(PHOTO_ROUNDS):
                for views, batch in rows:
                    print(f"[photo pipeline] {views}, {batch} ...", file=sys.stderr, flush=True)
                    rounds[views, batch].append(
                        measure_pipeline(
                            settings,
                            0,
                            models=models,
                            with_teacher=batch == "distillation",
                            views_on_device=views == "after",
                        )
                    )
        finally:
            torch.set_num_threads(threads)
    fastest = {row: max(measured, key=lambda m: m["images_per_cpu_s"]) for row, measured in rounds.items()}
    return {
        "photos": photos,
        "batch_size": PHOTO_BATCH_SIZE,
        "rounds": PHOTO_ROUNDS,
        "images_per_cpu_s": {
            views: {batch: fastest[views, batch]["images_per_cpu_s"] for batch in ("student", "distillation")}
            for views in ("before", "after")
        },
        "rounds_measured": {f"{views}, {batch}": measured for (views, batch), measured in rounds.items()},
        "device_views_ms_per_batch": fastest["after", "distillation"]["device_views_ms_per_batch"],
    }


# ---- the run ----


def _peer_rows(methods: list[str], timm_pair: ModelPair) -> list[StepRow]:
    """Our methods and timm.task's on one timm pair; our FitNet on stage 4, the nearest to timm's feature task."""
    rows = []
    for method in methods:
        name, options = PEER_OPTIONS.get(method, (method, {}))
        rows.append(StepRow(name, timm_pair, method=method, method_config=options))
    return rows + [StepRow(f"timm.task.{task}", timm_pair, task=task) for task in TIMM_TASKS]


def _measure(label: str, row: StepRow, settings: StepSettings) -> dict:
    print(f"[{label}] {row.name} ...", file=sys.stderr, flush=True)
    return measure_step_in_fresh_process(row, settings)


def run(options: argparse.Namespace) -> dict:
    if options.threads:
        torch.set_num_threads(options.threads)
    pair = ModelPair(options.teacher, options.student, options.teacher_model_args, options.student_model_args)
    settings = StepSettings(
        pair=pair,
        dataset=options.dataset,
        id2label=load_image_dataset(options.dataset).id2label,
        device=options.device,
        batch_size=options.batch_size,
        steps=options.steps,
        warmup=options.warmup,
        seed=options.seed,
        threads=options.threads,
        image_size=options.image_size,
        teacher_image_size=options.teacher_image_size or options.image_size,
        kd_temperature=options.kd_temperature,
        pipeline_batches=options.pipeline_batches,
    )
    results = {"machine": machine_info(options.device), "settings": settings.to_dict()}
    rows = [StepRow(method, pair, method=method) for method in options.methods]
    rows += [StepRow(name, pair, method=method, method_config=config) for name, (method, config) in options.variants.items()]
    methods = [_measure("methods", row, settings) for row in rows]
    add_ratios(methods, "kd")
    results["methods"] = methods

    pipeline = []
    for num_workers in options.num_workers:
        print(f"[pipeline] num_workers={num_workers} ...", file=sys.stderr, flush=True)
        measured = measure_pipeline(settings, num_workers)
        measured["ratio_to_step"] = {row["name"]: measured["images_per_s"] / row["images_per_s"] for row in methods}
        pipeline.append(measured)
    results["pipeline"] = pipeline

    if options.photos:
        photo_pipeline = measure_photo_pipeline(settings, options.photos)
        kd = next(row for row in methods if row["name"] == "kd")
        photo_pipeline["gflop_per_image"] = kd["gflops_per_step"] / settings.batch_size
        photo_pipeline["gpu_tflops"] = options.gpu_tflops
        results["photo_pipeline"] = photo_pipeline

    if not options.no_peer:
        timm_pair = ModelPair(
            options.timm_teacher, options.timm_student, options.timm_teacher_model_args, options.timm_student_model_args
        )
        peer = [_measure("peer", row, settings) for row in _peer_rows(options.methods, timm_pair)]
        add_ratios(peer, "kd")
        results["peer"] = {"pair": vars(timm_pair), "rows": peer}
    return results


# ---- the report ----


def _label(spec: str, model_args: dict | None) -> str:
    return f"`{shown_path(spec)}`" + (f" `{json.dumps(model_args)}`" if model_args else "")


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
        "Generated by `python -m benchmarks.speed` (see benchmarks/speed/run.py for what is compared).",
        "",
        f"Teacher {_label(pair['teacher'], pair['teacher_model_args'])} -> "
        f"student {_label(pair['student'], pair['student_model_args'])}:",
        "",
        "| method | step (ms) | images/s | peak memory (MB) | GFLOP / step | step / kd | memory / kd | FLOPs / kd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["methods"]:
        lines.append(
            f"| {row['name']} | {fmt(row['median_step_s'] * 1e3, 1)} | {fmt(row['images_per_s'], 0)} "
            f"| {fmt(row['peak_memory_mb'], 0)} | {fmt(row.get('gflops_per_step'), 1)} "
            f"| {fmt(row['step_ratio_to_kd'], 2, 'x')} | {fmt(row['memory_ratio_to_kd'], 2, 'x')} "
            f"| {fmt(row.get('flops_ratio_to_kd'), 2, 'x')} |"
        )
    if results.get("pipeline"):
        shown = [name for name in ("kd", "fbt") if name in results["pipeline"][0]["ratio_to_step"]]
        lines += [
            "",
            f"Data pipeline (`{shown_path(settings['dataset'])}` train split, `DistillationTransform` with both "
            "models' training transforms, `DistillationCollator`, `DataLoader`); ratio above 1: the pipeline outruns "
            "the step:",
            "",
            "| num_workers | images/s | " + " | ".join(f"pipeline / {name} step" for name in shown) + " |",
            "| ---: | ---: |" + " ---: |" * len(shown),
        ]
        for row in results["pipeline"]:
            ratios = " | ".join(fmt(row["ratio_to_step"][name], 2, "x") for name in shown)
            lines.append(f"| {row['num_workers']} | {fmt(row['images_per_s'], 0)} | {ratios} |")
    if results.get("photo_pipeline"):
        lines += ["", *photo_pipeline_table(results["photo_pipeline"], settings, machine)]
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
                f"| {name} | {fmt(row['median_step_s'] * 1e3, 1)} | {fmt(row['images_per_s'], 0)} "
                f"| {fmt(row['peak_memory_mb'], 0)} | {fmt(row['step_ratio_to_kd'], 2, 'x')} "
                f"| {fmt(row['memory_ratio_to_kd'], 2, 'x')} |"
            )
    return "\n".join(lines) + "\n"


def photo_pipeline_table(measured: dict, settings: dict, machine: dict) -> list[str]:
    """The pipeline table (images/s per core, before and after) and the cores a GPU would need, as lines."""
    rates, size = measured["images_per_cpu_s"], settings["image_size"]
    gpu_images_per_s = measured["gpu_tflops"] * 1e3 / measured["gflop_per_image"]
    lines = [
        f"Input pipeline at {size} px on photos: {measured['photos']} JPEGs made from the six photos of "
        f"`demo_data/photos` (random crops of 25-100 % of a photo, resized to a longer side of {PHOTO_LONGER_SIDE} px, "
        f"JPEG quality 90), through `DistillationTransform` and `DistillationCollator` in a `DataLoader` without "
        f"workers, batch {measured['batch_size']}, one thread: images per second of the process's CPU time, i.e. "
        f"per core (so other load on the machine does not count; fastest of {measured['rounds']} interleaved rounds). "
        "Before: each model's view made on the CPU (one decode, a crop, resize and "
        "normalisation per model). After: one crop and resize per image, a uint8 image; each model's view made "
        f"from it on the device by `DeviceViews` ({measured['device_views_ms_per_batch']:.1f} ms per batch on "
        f"this {machine['device']}, not counted).",
        "",
        "| views | student's view alone | distillation batch (student + teacher) | distillation / student alone |",
        "| --- | ---: | ---: | ---: |",
    ]
    for views, label in (("before", "before: each model's on the CPU"), ("after", "after: made on the device")):
        student, distillation = rates[views]["student"], rates[views]["distillation"]
        lines.append(f"| {label} | {student:.0f} | {distillation:.0f} | {100 * distillation / student:.0f} % |")
    cores = {views: gpu_images_per_s / rates[views]["distillation"] for views in rates}
    lines += [
        "",
        f"Cores needed to feed the headline step: the pair's `kd` step (teacher forward, student forward and backward) "
        f"is {measured['gflop_per_image']:.1f} GFLOP per image (FlopCounterMode, above); a GPU sustaining "
        f"{measured['gpu_tflops']:.0f} TFLOP/s in bf16 runs it at {gpu_images_per_s:,.0f} images/s, which takes "
        f"{cores['before']:.0f} cores like this one's before and {cores['after']:.0f} after (workers scale with "
        "cores; one more for the training loop).",
    ]
    return lines


# ---- the command line ----


def _json(value: str) -> dict | None:
    return json.loads(value) or None


def _csv(kind):
    return lambda value: [kind(item) for item in value.split(",") if item]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--pair",
        choices=("demo", "headline"),
        default="demo",
        help="demo: --teacher/--student (default: the demo's ResNet teacher -> ViT student at 32 px); headline: "
        "ViT-B/16 -> ResNet-18 at 224 px from configs, written into <output_dir>/models/.",
    )
    parser.add_argument("--teacher", default=str(REPO / "demo_data/models/resnet-teacher-config"))
    parser.add_argument("--student", default=str(REPO / "demo_data/models/vit-student-config"))
    parser.add_argument(
        "--variants",
        type=_json,
        default={},
        help='More rows: JSON {"row name": ["method", {options}]}, e.g. a method at non-default options.',
    )
    parser.add_argument("--teacher_model_args", type=_json, help="JSON timm.create_model kwargs for a timm: teacher.")
    parser.add_argument("--student_model_args", type=_json, help="JSON timm.create_model kwargs for a timm: student.")
    parser.add_argument("--timm_teacher", default=TIMM_TEACHER, help="Teacher of the timm.task comparison.")
    parser.add_argument("--timm_student", default=TIMM_STUDENT, help="Student of the timm.task comparison.")
    parser.add_argument("--timm_teacher_model_args", type=_json, default=TIMM_TEACHER_ARGS)
    parser.add_argument("--timm_student_model_args", type=_json, default=TIMM_STUDENT_ARGS)
    parser.add_argument("--no_peer", action="store_true", help="Skip the timm.task comparison.")
    parser.add_argument("--methods", type=_csv(str), default=benchmark_methods(), help="Comma-separated; default all.")
    parser.add_argument("--device", default=default_device())
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
    parser.add_argument(
        "--photos",
        type=int,
        default=0,
        help="Also time the training input pipeline on this many photos at the pair's resolution, before and after "
        "views made on the device (needs kd among --methods for the projection).",
    )
    parser.add_argument(
        "--gpu_tflops",
        type=float,
        default=400.0,
        help="Sustained bf16 TFLOP/s of the GPU the --photos projection assumes (about 40 %% of an H100's dense peak).",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("benchmarks/speed"))
    parser.add_argument("--readme", type=Path, default=BENCHMARKS_README, help="Where the table is inserted.")
    parser.add_argument(
        "--readme_region",
        default=README_REGION,
        help="The table goes between <!-- REGION:start --> and <!-- REGION:end --> in --readme.",
    )
    parser.add_argument("--no_readme", action="store_true", help="Write results.json and table.md only.")
    parser.add_argument("--report_only", action="store_true", help="Regenerate the tables from results.json.")
    options = parser.parse_args(argv)
    options.variants = options.variants or {}
    if options.pair == "headline" and not options.report_only:
        options.teacher, options.student = write_headline_models(options.output_dir / "models")
        options.image_size = HEADLINE_SIZE
    unknown = set(options.methods) - set(benchmark_methods())
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(benchmark_methods())}")
    if options.photos and "kd" not in options.methods:
        parser.error("--photos projects from the kd step's FLOPs: include kd in --methods")
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if options.report_only:
        results = read_results(options.output_dir)
    else:
        results = run(options)
        write_results(options.output_dir, results)
    readme = None if options.no_readme else options.readme
    print(write_table(options.output_dir, markdown_table(results), readme, options.readme_region))

