"""The accuracy benchmark's runs: which are planned, which are left, where each goes, and training them."""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import benchmark_methods, training_arguments
from hf_cakd.training.checkpointing import last_complete_checkpoint
from hf_cakd.data import load_image_dataset
from hf_cakd.methods import method_class
from hf_cakd.run.pipeline import DataArguments, ModelArguments, distill

from .profiles import ABLATED_METHOD, TEACHER_METHOD, VALIDATION_FRACTION, Profile, committed_teacher, schedule


BENCHMARK_PARTS = ("tuning", "table", "ablation")


def teacher_dir(output_dir: Path, role: str) -> Path:
    return output_dir / "teachers" / role


def run_dir(output_dir: Path, pair: str, method: str, seed: int) -> Path:
    return output_dir / "runs" / pair / method / f"seed{seed}"


def ablation_dir(output_dir: Path, pair: str, variant: str) -> Path:
    return output_dir / "ablation" / pair / _slug(variant)


def tuning_dir(output_dir: Path, pair: str, method: str, setting: str, seed: int | None = None) -> Path:
    """A screen run's folder; ``seed`` None: the profile's first seed, whose folder has no suffix (the screens
    trained before ``--screen_seeds`` existed are there)."""
    return output_dir / "tuning" / pair / method / (_slug(setting) + ("" if seed is None else f"-seed{seed}"))


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("->", "to").replace("(", "").replace(")", "")


def finished_results(directory: Path) -> dict | None:
    results_file = directory / "results.json"
    return json.loads(results_file.read_text()) if results_file.exists() else None


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
            return ("tuning", self.pair, self.method, self.variant, "runs", self.seed)
        return ("ablation", self.pair, self.variant)


def table_run(output_dir: Path, pair: str, method: str, seed: int) -> PlannedRun:
    """The table's run of ``method`` on ``pair`` at ``seed`` (test split)."""
    return PlannedRun("table", pair, method, seed, run_dir(output_dir, pair, method, seed), f"{pair} {method} seed {seed}")


def planned_runs(
    profile: Profile, output_dir: Path, pairs, seeds, methods, parts, screen_seeds=None
) -> list[PlannedRun]:
    """The runs ``parts`` selects, in the order they are trained: the validation screen seed by seed
    (``screen_seeds``, default the profile's first), then the table seed by seed (so that an interrupted
    benchmark has whole seeds), then the ablation."""
    first_seed = profile.seeds[0]
    runs = [
        PlannedRun(
            "tuning",
            pair,
            method,
            seed,
            tuning_dir(output_dir, pair, method, setting, None if seed == first_seed else seed),
            f"{pair} {method} {setting} seed {seed} (validation)",
            setting,
            method_config or None,
        )
        for seed in ((screen_seeds or [first_seed]) if "tuning" in parts else ())
        for pair in pairs
        for method, settings in profile.tuning.items()
        if method in methods and pair in profile.tuning_pairs.get(method, profile.pairs)
        for setting, method_config in settings.items()
    ]
    runs += [
        table_run(output_dir, pair, method, seed)
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
            ablation_dir(output_dir, pair, variant),
            f"{pair} {ABLATED_METHOD} {variant} seed {first_seed}",
            variant,
            profile.ablations[variant],
        )
        for pair in (pairs if "ablation" in parts else ())
        for variant in profile.ablations
    ]
    return runs


def more_seeds(profile: Profile, output_dir: Path, record: dict | None, pair: str, method: str) -> tuple[int, ...]:
    """``profile.more_seeds`` when the pair's ``method`` finished every one of the profile's seeds and their top-1
    std exceeds ``profile.more_seeds_above_std``; otherwise none."""
    top1 = []
    for seed in profile.seeds:
        run = table_run(output_dir, pair, method, seed)
        results = finished_results(run.directory)
        summary = results["metrics"]["student"] if results else recorded(record, run.record)
        if summary is None:
            return ()
        top1.append(summary["top1"])
    noisy = len(top1) > 1 and statistics.stdev(top1) > profile.more_seeds_above_std
    return profile.more_seeds if noisy else ()


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
    """The results.json already in ``output_dir`` when it was written for the same schedule, else None; written
    for the same schedule with other committed teachers, only its runs of methods that learn from no teacher."""
    results_file = output_dir / "results.json"
    if not results_file.is_file():
        return None
    previous = with_screen_rows(json.loads(results_file.read_text()))
    current = schedule(profile) | {"bf16": None}
    recorded_schedule = previous.get("schedule", {}) | {"bf16": None}
    if recorded_schedule == current:
        return previous
    if recorded_schedule | {"teachers": current.get("teachers")} == current:
        return _untaught_runs(previous)
    return None


def _untaught_runs(record: dict) -> dict:
    """``record`` less every run that learned from a teacher (and the teachers themselves)."""
    untaught = {method for method in benchmark_methods() if not method_class(method).requires_teacher}
    return record | {
        "teachers": {},
        "pairs": {
            pair: entry | {"methods": {m: row for m, row in entry["methods"].items() if m in untaught}}
            for pair, entry in record.get("pairs", {}).items()
        },
        "tuning": {
            pair: {method: settings for method, settings in methods.items() if method in untaught}
            for pair, methods in record.get("tuning", {}).items()
        },
        "ablation": {},
    }


def with_screen_rows(results: dict) -> dict:
    """``results`` with every screened setting as a row of runs (``seed_row``, its ``options`` beside): a
    results.json written before the screen ran at several seeds kept the one run of a setting there."""
    for methods in results.get("tuning", {}).values():
        for settings in methods.values():
            for setting, entry in settings.items():
                if "runs" not in entry:
                    run = dict(entry)
                    options = run.pop("options", None)
                    settings[setting] = seed_row([run]) | ({"options": options} if options else {})
    return results


def seed_row(runs: list[dict]) -> dict:
    """Runs of one method or setting at several seeds and their mean and std per measure."""
    keys = ("top1", "top5", "train_seconds", "assistant_top1", "student_ema_top1")
    return {"runs": runs, **{key: _seed_summary([run[key] for run in runs]) for key in keys if key in runs[0]}}


def _seed_summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def pending_runs(profile: Profile, options: argparse.Namespace) -> list[PlannedRun]:
    """The runs ``options`` selects (default: all) that neither a run folder nor the results.json already in
    ``--output_dir`` holds."""
    record = previous_results(options.output_dir, profile)
    selected = planned_runs(
        profile,
        options.output_dir,
        options.pairs or list(profile.pairs),
        options.seeds if options.seeds is not None else list(profile.seeds),
        options.methods or benchmark_methods(),
        options.parts,
        options.screen_seeds,
    )
    if options.ablations:
        selected = [run for run in selected if run.part != "ablation" or run.variant in options.ablations]
    if options.settings:
        selected = [run for run in selected if run.part != "tuning" or run.variant in options.settings]
    if "table" in options.parts and options.seeds is None:
        selected += [
            table_run(options.output_dir, pair, method, seed)
            for pair in options.pairs or list(profile.pairs)
            for method in options.methods or benchmark_methods()
            for seed in more_seeds(profile, options.output_dir, record, pair, method)
        ]
    return [run for run in selected if finished_results(run.directory) is None and recorded(record, run.record) is None]


def run_once(
    output_dir: Path, label: str, profile: Profile, data: DataArguments, models: ModelArguments, **kwargs
) -> dict:
    """One ``distill`` run into ``output_dir`` with the profile's schedule, or its results.json when an
    earlier run finished there. A run stopped by a signal (it saves a checkpoint then) continues from its newest
    complete checkpoint. ``kwargs``: ``method``, ``seed``, ``num_train_epochs``. The teacher is dropped for
    methods that need none."""
    results_file = output_dir / "results.json"
    if results_file.exists():
        print(f"[benchmark] {label}: reusing {results_file}", file=sys.stderr, flush=True)
        return json.loads(results_file.read_text())
    checkpoint = last_complete_checkpoint(str(output_dir))
    print(f"[benchmark] {label} ..." + (f" resuming from {checkpoint}" if checkpoint else ""), file=sys.stderr, flush=True)
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
        resume_from_checkpoint=checkpoint,
        **kwargs,
    )
    results = distill(models, data, training_args)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    top1 = results["metrics"].get("student", {}).get("top1", float("nan"))
    print(f"[benchmark] {label}: top-1 {100 * top1:.2f}% ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return results


def run_benchmark(profile: Profile, options: argparse.Namespace, models: dict[str, dict]) -> None:
    """Train the pending runs, then the more seeds (``Profile.more_seeds``) their finished table calls for."""
    first = pending_runs(profile, options)
    train_runs(profile, options, models, first)
    train_runs(profile, options, models, [run for run in pending_runs(profile, options) if run not in first])


def train_runs(profile: Profile, options: argparse.Namespace, models: dict[str, dict], pending: list[PlannedRun]) -> None:
    """Train ``pending``, and the teachers only when one of them needs its teacher."""
    output_dir: Path = options.output_dir

    def data(source: str, train_samples: int | None, validation: bool = False, recipe: dict | None = None) -> DataArguments:
        return DataArguments(
            source,
            eval_split="validation" if validation else None,
            max_train_samples=train_samples,
            max_eval_samples=profile.eval_samples,
            overwrite_output_dir=True,
            **(recipe or {}),
        )

    needed = {profile.pairs[run.pair][0] for run in pending if method_class(run.method).requires_teacher}
    for role in sorted(needed - set(profile.committed_teachers)):
        run_once(
            teacher_dir(output_dir, role),
            f"teacher {role}",
            profile,
            data(options.data, profile.teacher_train_samples),
            ModelArguments(student=models[role]["spec"]),
            method=TEACHER_METHOD,
            seed=0,
            num_train_epochs=profile.teacher_epochs,
        )
    for run in pending:
        teacher_role, student_role = profile.pairs[run.pair]
        teacher = committed_teacher(profile, teacher_role) or teacher_dir(output_dir, teacher_role)
        source = str(validation_data(options.data, output_dir)) if run.validation else options.data
        run_once(
            run.directory,
            run.label,
            profile,
            data(source, profile.train_samples, run.validation, profile.recipe.get("data")),
            ModelArguments(student=models[student_role]["spec"], teacher=str(teacher)),
            method=run.method,
            method_config=run.method_config,
            seed=run.seed,
            num_train_epochs=profile.epochs,
            **profile.recipe.get("training", {}),
        )
