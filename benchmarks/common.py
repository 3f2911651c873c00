"""What the benchmarks share: typed settings, timed training steps, results files and README tables.

``benchmarks/{accuracy,speed,memory}`` build runs from these pieces and call
:func:`hf_cakd.run.pipeline.distill` (or the :class:`~hf_cakd.DistillationTrainer`) directly; no
benchmark imports another. Methods and their options come from the registry (``hf_cakd.methods``).

- settings: :class:`Schedule` (the optimisation of a benchmark run), :class:`ModelPair`,
  :class:`StepSettings` and :class:`StepRow` (one timed training step); the headline pair at 224 px
  (:data:`HEADLINE_MODELS`, :func:`write_headline_models`);
- methods: :func:`benchmark_methods` (registry order for tables), :func:`options_for`;
- runs: :func:`training_arguments` (logging as ``hf-cakd distill`` sets it up: ``hf_cakd.cli.setup_logging``);
- measurements: :func:`measure_step` (in this process), :func:`measure_step_in_fresh_process`,
  :func:`call_in_fresh_process`, :func:`measure_pipeline`, :func:`peak_memory_mb`, :func:`machine_info`;
- outputs: :func:`add_ratios`, :func:`fmt`, :func:`shown_path`, :func:`write_results`, :func:`read_results`,
  :func:`write_table`, :func:`update_readme`, :func:`pyplot`.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import ConvNextImageProcessor, PretrainedConfig, ResNetConfig, ViTConfig, ViTImageProcessor, set_seed
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    PILImageResampling,
)

from hf_cakd import load_classifier
from hf_cakd.data import IMAGES_KEY
from hf_cakd.methods import METHODS, method_class
from hf_cakd.training.training_args import DistillationTrainingArguments

# The source checkout the benchmarks run from: paths under it are recorded relative to it.
REPO = Path(__file__).resolve().parents[1]
RESULTS_NAME = "results.json"
TABLE_NAME = "table.md"
README_SECTION = "## Benchmarks"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"  # where the benchmarks' tables go


# ---- settings ----


# CNNs get the ImageNet statistics, ViT and Mixer the 0.5 ones, as their transformers/timm configs do.
CNN_NORM = (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))
TOKEN_NORM = (tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD))


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


# The design card's pair at 224 px: ViT-B/16 (transformers' ViTConfig defaults) -> ResNet-18, as configs, with
# the image processors of google/vit-base-patch16-224 and microsoft/resnet-18 (their training views' recipes).
HEADLINE_SIZE = 224
HEADLINE_MODELS = {
    "vit-base-patch16-224": (
        ViTConfig(),
        ViTImageProcessor(
            size={"height": HEADLINE_SIZE, "width": HEADLINE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
    ),
    "resnet-18": (
        ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
        ConvNextImageProcessor(
            size={"shortest_edge": HEADLINE_SIZE},
            crop_pct=0.875,
            resample=PILImageResampling.BICUBIC,
            image_mean=IMAGENET_DEFAULT_MEAN,
            image_std=IMAGENET_DEFAULT_STD,
        ),
    ),
}


def write_headline_models(root: Path) -> tuple[str, str]:
    """Config-only directories of the headline pair (``load_classifier`` builds them from scratch)."""
    return write_model_dirs(root, HEADLINE_MODELS)


def saved_with_weights(config_dir: str | Path, id2label: dict[int, str], folder: Path) -> Path:
    """The model of a config-only directory, its weights drawn at seed 0 for ``id2label``, saved with its image
    processor in ``folder``: a teacher must have weights, and a benchmark of cost or parity needs no trained ones."""
    set_seed(0)
    load_classifier(str(config_dir), id2label).save_pretrained(folder)
    shutil.copy(Path(config_dir) / "preprocessor_config.json", folder)
    return folder


def write_model_dirs(root: Path, models: dict[str, tuple[PretrainedConfig, Any]]) -> tuple[str, ...]:
    """``root/<name>`` for each ``{name: (config, image processor)}``, in order: a config and a processor, no weights."""
    for name, (config, processor) in models.items():
        config.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return tuple(str(root / name) for name in models)


@dataclass(frozen=True)
class Schedule:
    """The optimisation a benchmark run uses (AdamW, the Trainer's default optimizer)."""

    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # below 1: a fraction of the steps; else a number of steps
    lr_scheduler: str = "cosine"

    def training_kwargs(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "warmup_steps": self.warmup,
            "lr_scheduler_type": self.lr_scheduler,
        }


@dataclass(frozen=True)
class ModelPair:
    """A teacher and a student as ``hf_cakd.load_classifier`` specs, with timm kwargs for ``timm:`` specs."""

    teacher: str
    student: str
    teacher_model_args: dict | None = None
    student_model_args: dict | None = None

    def load(self, id2label: dict, with_teacher: bool = True):
        """``(student, teacher)``; the teacher frozen, or None."""
        from hf_cakd.model_specs import load_classifier

        student = load_classifier(self.student, id2label, model_args=self.student_model_args)
        teacher = None
        if with_teacher:
            teacher = load_classifier(self.teacher, id2label, model_args=self.teacher_model_args)
            teacher.requires_grad_(False).eval()
        return student, teacher


@dataclass(frozen=True)
class StepSettings:
    """How training steps are timed: one random but fixed batch of ``batch_size``, ``warmup`` + ``steps`` steps."""

    pair: ModelPair
    dataset: str  # for the input pipeline's images
    id2label: dict = field(repr=False)
    device: str = "cpu"
    batch_size: int = 64
    steps: int = 20
    warmup: int = 3
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: torch's default
    image_size: int = 32
    teacher_image_size: int = 32
    kd_temperature: float = 4.0  # for the methods (and timm tasks) that have one
    pipeline_batches: int = 30
    bf16: bool = False  # our rows under bf16 autocast, as --bf16 trains (timm.task rows stay in float32)

    def to_dict(self) -> dict:
        """What results.json records (paths as :func:`shown_path` shows them, no labels)."""
        settings = asdict(self)
        del settings["id2label"]
        settings["dataset"] = shown_path(self.dataset)
        settings["pair"].update(teacher=shown_path(self.pair.teacher), student=shown_path(self.pair.student))
        return settings


@dataclass(frozen=True)
class StepRow:
    """One timed step: a registered ``method`` through the DistillationTrainer, or a ``timm.task`` class."""

    name: str
    pair: ModelPair
    method: str | None = None
    task: str | None = None  # ClassificationTask, LogitDistillationTask or FeatureDistillationTask
    method_config: dict = field(default_factory=dict)  # options beside options_for(method, kd_temperature=...)
    training_args: dict = field(default_factory=dict)  # TrainingArguments of this row alone, e.g. torch_compile

    @property
    def compiled(self) -> bool:
        return bool(self.training_args.get("torch_compile"))

    @property
    def runner(self) -> str:
        return "ours" if self.task is None else "timm.task"


# ---- methods and runs ----


FEATURED_METHOD = "fbt"  # the method the benchmarks measure against the others: the tables' last column


def benchmark_methods(exclude: tuple[str, ...] = ()) -> list[str]:
    """The registered methods in table order: those without a teacher first, :data:`FEATURED_METHOD`
    last, the others by name."""
    names = sorted(METHODS, key=lambda name: (METHODS[name].requires_teacher, name == FEATURED_METHOD, name))
    return [name for name in names if name not in exclude]


def options_for(method: str, **options) -> dict[str, Any]:
    """The ``options`` that ``method``'s config has (e.g. ``kd_temperature`` for the methods with one)."""
    names = method_class(method).config_class.option_names()
    return {name: value for name, value in options.items() if name in names}


def training_arguments(
    output_dir: str | Path,
    method: str,
    method_config: dict | None = None,
    schedule: Schedule | None = None,
    **kwargs,
) -> DistillationTrainingArguments:
    """One run's arguments: nothing reported, no progress bars, ``schedule`` (else the Trainer's defaults),
    then ``kwargs`` (any ``TrainingArguments`` field)."""
    settings = {"report_to": "none", "disable_tqdm": True, **(schedule.training_kwargs() if schedule else {})}
    return DistillationTrainingArguments(
        output_dir=str(output_dir), method=method, method_config=method_config, **(settings | kwargs)
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- one timed training step ----


def peak_memory_mb(device: torch.device, rss_baseline_kib: int = 0) -> float:
    """This process's peak: ``torch.cuda.max_memory_allocated`` on CUDA, else its peak RSS less ``rss_baseline_kib``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_baseline_kib) / 1024  # Linux: KiB


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fixed_batch(settings: StepSettings, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(settings.seed)
    size, teacher_size, batch_size = settings.image_size, settings.teacher_image_size, settings.batch_size
    batch = {
        "pixel_values": torch.randn(batch_size, 3, size, size, generator=generator),
        "teacher_pixel_values": torch.randn(batch_size, 3, teacher_size, teacher_size, generator=generator),
        "labels": torch.randint(len(settings.id2label), (batch_size,), generator=generator),
    }
    return {name: value.to(device) for name, value in batch.items()}


def _step_arguments(
    settings: StepSettings, method: str, output_dir: str, method_config: dict | None = None, row_args: dict | None = None
):
    options = options_for(method, kd_temperature=settings.kd_temperature) | (method_config or {})
    return training_arguments(
        output_dir,
        method,
        options,
        per_device_train_batch_size=settings.batch_size,
        student_image_size=settings.image_size,
        teacher_image_size=settings.teacher_image_size,
        use_cpu=settings.device == "cpu",
        seed=settings.seed,
        **({"bf16": True} if settings.bf16 else {}),
        **(row_args or {}),
    )


def _our_step(row: StepRow, settings: StepSettings, batch: dict, output_dir: str):
    """The DistillationTrainer's own training_step, then its own optimizer's step, both prepared by its
    Accelerator as ``Trainer.train`` prepares them (so ``bf16`` autocasts and ``torch_compile`` compiles)."""
    from hf_cakd.training.trainer import DistillationTrainer

    student, teacher = row.pair.load(settings.id2label, with_teacher=method_class(row.method).requires_teacher)
    args = _step_arguments(settings, row.method, output_dir, row.method_config, row.training_args)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop otherwise
    model, optimizer = trainer.accelerator.prepare(trainer.model, trainer.create_optimizer())

    def step():
        trainer.training_step(model, batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def _timm_task_step(row: StepRow, settings: StepSettings, batch: dict, output_dir: str, device: torch.device):
    """timm.task on the bare timm models, with the optimizer the Trainer would create."""
    import timm.task
    from transformers import Trainer

    student, teacher = row.pair.load(settings.id2label, with_teacher=row.task != "ClassificationTask")
    student = student.timm_model
    common = {"criterion": torch.nn.CrossEntropyLoss(), "device": device, "verbose": False}
    if row.task == "ClassificationTask":
        task = timm.task.ClassificationTask(student, **common)
    else:
        weights = {"task_loss_weight": 1.0, "distill_loss_weight": 1.0}
        if row.task == "LogitDistillationTask":
            weights["temperature"] = settings.kd_temperature
        task = getattr(timm.task, row.task)(student, teacher.timm_model, **common, **weights)
    task.to(device)
    args = _step_arguments(settings, "none", output_dir)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    optimizer = optimizer_cls(task.trainable_module.parameters(), weight_decay=args.weight_decay, **optimizer_kwargs)
    inputs, labels = batch["pixel_values"], batch["labels"]

    def step():
        task.train()
        task(inputs, labels)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def measure_step(row: StepRow, settings: StepSettings) -> dict:
    """Median step time, peak memory and FLOPs of one row, in this process (see benchmarks/speed/run.py)."""
    # Everything imported before the memory baseline, so that it is not counted as the row's.
    import timm.task  # noqa: F401
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    transformers.utils.logging.set_verbosity_error()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    rss_baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(settings.seed)  # every row starts from the same initial weights
    batch = _fixed_batch(settings, device)
    with tempfile.TemporaryDirectory() as output_dir:
        if row.runner == "ours":
            step, optimizer = _our_step(row, settings, batch, output_dir)
        else:
            step, optimizer = _timm_task_step(row, settings, batch, output_dir, device)
        warmup_start = time.perf_counter()
        for _ in range(settings.warmup):
            step()
        _synchronize(device)
        warmup_s = time.perf_counter() - warmup_start  # with torch_compile: mostly compiling
        times = []
        for _ in range(settings.steps):
            start = time.perf_counter()
            step()
            _synchronize(device)
            times.append(time.perf_counter() - start)
        # Once more, untimed, counting floating-point operations (matmuls and convolutions, forward
        # and backward): a machine-independent cost of the same step. A compiled step runs graphs the
        # counter cannot see into; its FLOPs are those of the same row uncompiled.
        gflops = None
        if not row.compiled:
            with FlopCounterMode(display=False) as flop_counter:
                step()
            gflops = flop_counter.get_total_flops() / 1e9
    median = statistics.median(times)
    optimizer = getattr(optimizer, "optimizer", optimizer)  # the Trainer's, inside Accelerate's wrapper
    return {
        "name": row.name,
        "runner": row.runner,
        "median_step_s": median,
        "images_per_s": settings.batch_size / median,
        "peak_memory_mb": peak_memory_mb(device, rss_baseline_kib),
        "gflops_per_step": gflops,
        "warmup_s": warmup_s,
        "step_times_s": times,
        "torch_threads": torch.get_num_threads(),
        "optimizer": f"{type(optimizer).__name__}(fused={optimizer.defaults.get('fused')})",
    }


def measure_step_in_fresh_process(row: StepRow, settings: StepSettings, timeout: float | None = None) -> dict:
    """:func:`measure_step` in a new (``spawn``) process, so that its peak memory is the row's alone."""
    return call_in_fresh_process(measure_step, row, settings, timeout=timeout)


def call_in_fresh_process(function, *args, timeout: float | None = None):
    """``function(*args)`` in a new (``spawn``) process; its exception is raised here. Past ``timeout`` seconds
    the process is killed and ``TimeoutError`` raised."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(function, *args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            for process in list(pool._processes.values()):  # the executor stops no worker itself (before 3.14)
                process.kill()
            raise TimeoutError(f"{function.__name__} took more than {timeout:.0f} s; stopped") from None


def measure_pipeline(
    settings: StepSettings,
    num_workers: int,
    *,
    dataset: str | None = None,
    models: tuple | None = None,
    with_teacher: bool = True,
    views_on_device: bool = False,
) -> dict:
    """Images/s of load_image_dataset -> DistillationTransform -> DistillationCollator in a DataLoader.

    ``dataset`` replaces ``settings.dataset``; ``models`` is the pair already loaded, ``(student,
    teacher)``. ``with_teacher=False`` times the student's view alone. ``views_on_device=True`` times
    the CPU's half of the training views (one augmented uint8 image per row, see
    ``hf_cakd.data.DeviceViews``); else each model's view is made on the CPU. Without workers the
    rate per CPU-second of this process is given too (``images_per_cpu_s``), which other load on
    the machine does not change.
    """
    from torch.utils.data import DataLoader

    from hf_cakd.data import DistillationCollator, DistillationTransform, load_image_dataset
    from hf_cakd.model_specs import load_image_processor

    pair = settings.pair
    data = load_image_dataset(dataset or settings.dataset)
    student, teacher = models or pair.load(data.id2label)
    transform = DistillationTransform.for_models(
        student,
        teacher if with_teacher else None,
        train=True,
        student_processor=load_image_processor(pair.student),
        teacher_processor=load_image_processor(pair.teacher),
        student_image_size=settings.image_size,
        teacher_image_size=settings.teacher_image_size,
        image_column=data.image_column,
        label_column=data.label_column,
        views_on_device=views_on_device,
    )
    loader = DataLoader(
        transform.apply_to(data.train),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=DistillationCollator(),
        pin_memory=settings.device == "cuda",
        generator=torch.Generator().manual_seed(settings.seed),
    )
    batches = min(settings.pipeline_batches, len(loader) - 1)
    iterator = iter(loader)
    batch = next(iterator)  # worker start-up and first-batch latency are not throughput
    start, cpu_start, images = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        images += len(next(iterator)["labels"])
    elapsed, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    measured = {"num_workers": num_workers, "batches": batches, "images_per_s": images / elapsed}
    if num_workers == 0:  # all the work is this process's: its CPU time is the pipeline's, whatever else runs
        measured["images_per_cpu_s"] = images / cpu_seconds
    if transform.device_views is not None:
        measured["device_views_ms_per_batch"] = _device_views_ms(transform.device_views, batch, settings.device)
    return measured


def _device_views_ms(device_views, batch: dict, device: str, repeats: int = 5) -> float:
    """The device's half of the training views: milliseconds of ``device_views`` on one batch already on
    ``device`` (on a CPU, of this process's CPU time, as the pipeline's rate per CPU-second)."""
    device = torch.device(device)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    images = batch[IMAGES_KEY].to(device)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = clock()
        device_views({IMAGES_KEY: images})
        _synchronize(device)
        times.append(clock() - start)
    return statistics.median(times) * 1e3


def machine_info(device: str | torch.device | None = None) -> dict:
    """The device, CPU, threads and library versions a measurement ran with (default device: CUDA if any)."""
    import timm
    import transformers

    device = torch.device(device or default_device())
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
        "accelerate": importlib.metadata.version("accelerate"),
        "datasets": importlib.metadata.version("datasets"),
        "platform": platform.platform(),
    }


# ---- outputs ----


def add_ratios(rows: list[dict], reference: str) -> None:
    """Each row's step time, peak memory and FLOPs as ratios to the row named ``reference`` (None without it)."""
    ref = next((row for row in rows if row["name"] == reference), None)
    for row in rows:
        for key, ratio in (("median_step_s", "step"), ("peak_memory_mb", "memory"), ("gflops_per_step", "flops")):
            value, ref_value = row.get(key), ref and ref.get(key)
            row[f"{ratio}_ratio_to_{reference}"] = value / ref_value if value is not None and ref_value else None


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    """A table cell: ``value`` to ``digits`` decimals then ``suffix``, or ``-`` when missing."""
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def shown_path(path: str | Path) -> str:
    """A local path as results and tables show it: relative to the repository when near it, so that no
    machine is named; anything else (Hub ids, ``timm:`` specs) as given."""
    if not os.path.exists(path):
        return str(path)
    resolved = Path(path).resolve()
    return os.path.relpath(resolved, REPO) if resolved.is_relative_to(REPO.parent) else str(resolved)


def write_results(output_dir: Path, results: dict) -> Path:
    """``results.json`` in ``output_dir`` (created when missing)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_NAME
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def read_results(output_dir: Path) -> dict:
    """The results.json an earlier run wrote into ``output_dir`` (for ``--report_only``)."""
    results_file = output_dir / RESULTS_NAME
    if not results_file.is_file():
        raise SystemExit(
            f"--report_only: {results_file} does not exist. Run the benchmark without --report_only first, "
            "or pass the --output_dir it wrote to."
        )
    return json.loads(results_file.read_text())


def write_table(output_dir: Path, table: str, readme: Path | None, region: str, readme_table: str | None = None) -> str:
    """``table.md`` in ``output_dir``; into ``readme``'s ``region`` too (``readme_table`` when its links differ)."""
    (output_dir / TABLE_NAME).write_text(table)
    if readme is not None:
        update_readme(readme, readme_table or table, region)
    return table


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


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (charts are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
