"""The accuracy benchmark's results.json, gathered from finished run folders and the committed record."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import benchmark_methods, machine_info, shown_path

from .profiles import Profile, committed_teacher, schedule
from .runs import (
    BENCHMARK_PARTS,
    PlannedRun,
    finished_results,
    more_seeds,
    planned_runs,
    previous_results,
    recorded,
    seed_row,
    table_run,
    teacher_dir,
)


def collect_results(profile_name: str, profile: Profile, options: argparse.Namespace, models: dict[str, dict]) -> dict:
    """The benchmark's results.json from every finished run under ``output_dir`` (several processes may have
    trained parts of it) and, for runs whose folder is gone, the results.json already there; the runs of the
    profile not finished yet are listed in ``missing``."""
    output_dir: Path = options.output_dir
    record = previous_results(output_dir, profile)
    teachers, pairs, ablation, tuning, missing = {}, {}, {}, {}, []
    for role in profile.teacher_roles():
        directory = committed_teacher(profile, role) or teacher_dir(output_dir, role)
        results = finished_results(directory)
        if results is not None:
            teachers[role] = _run_summary(results, dir=shown_path(directory))
        elif (kept := recorded(record, ("teachers", role))) is not None:
            teachers[role] = kept
        else:
            missing.append(f"teacher {role}")
    screen_seeds = options.screen_seeds or profile.seeds[:1]
    for run in _collected_runs(profile, output_dir, screen_seeds, record):
        results = finished_results(run.directory)
        if results is not None:
            summary = _run_summary(results, seed=run.seed, dir=shown_path(run.directory))
        else:
            summary = recorded(record, run.record)
        if summary is None:
            if _asked_for(profile, run, screen_seeds, output_dir, record):
                missing.append(run.label)
            continue
        flags = {"options": run.method_config} if run.method_config else {}  # the flags as this version spells them
        if run.part == "tuning":
            settings = tuning.setdefault(run.pair, {}).setdefault(run.method, {})
            settings[run.variant] = seed_row([*settings.get(run.variant, {}).get("runs", []), summary]) | flags
        elif run.part == "ablation":
            if results is not None and _repeats_full_run(results, output_dir, run):
                summary["repeats_full"] = True
            ablation.setdefault(run.pair, {})[run.variant] = summary | flags
        else:
            pairs.setdefault(run.pair, {}).setdefault(run.method, []).append(summary)
    # Settings the profile no longer screens (an option since removed) keep their recorded rows.
    for pair, methods in (record or {}).get("tuning", {}).items():
        for method, settings in methods.items():
            for setting, row in settings.items():
                tuning.setdefault(pair, {}).setdefault(method, {}).setdefault(setting, row)
    return {
        "profile": profile_name,
        "data": shown_path(options.data),
        "schedule": schedule(profile),
        "machines": _machines(record),
        "models": {role: model | {"spec": shown_path(model["spec"])} for role, model in models.items()},
        "teachers": teachers,
        "pairs": {
            pair: {
                "teacher": profile.pairs[pair][0],
                "student": profile.pairs[pair][1],
                "teacher_top1_range": _taught_by(rows, teachers[profile.pairs[pair][0]]),
                "methods": {method: seed_row(method_runs) for method, method_runs in rows.items()},
            }
            for pair, rows in pairs.items()
            if profile.pairs[pair][0] in teachers
        },
        "ablation": ablation,
        "tuning": tuning,
        "missing": missing,
    }


def _repeats_full_run(results: dict, output_dir: Path, run: PlannedRun) -> bool:
    """Whether an ablation run's resolved options are full fbt's at the same seed: switching off a part the
    pair's defaults already leave off (F -> S for a CNN student of an attention teacher) trains the same run."""
    full = finished_results(table_run(output_dir, run.pair, run.method, run.seed).directory)
    return full is not None and "method_config" in results and full.get("method_config") == results["method_config"]


def _asked_for(profile: Profile, run: PlannedRun, screen_seeds: list[int], output_dir: Path, record: dict | None) -> bool:
    """Whether the profile asks for ``run``: the screen at ``--screen_seeds``, the table at the profile's seeds
    and at the more seeds a method's spread calls for, the ablation."""
    if run.part == "tuning":
        return run.seed in screen_seeds
    if run.part == "table" and run.seed not in profile.seeds:
        return run.seed in more_seeds(profile, output_dir, record, run.pair, run.method)
    return True


def _run_summary(results: dict, **where) -> dict:
    """What the benchmark keeps of one run's results.json: the student's accuracy, the top-1 of the teacher
    it learned from, of the assistant when the method has one (FBT's F) and of the student's EMA when the run
    kept one (``--recipe``), and the training time."""
    summary = where | results["metrics"]["student"] | {"train_seconds": results["train_seconds"]}
    for model in ("teacher", "assistant", "student_ema"):
        if model in results["metrics"]:
            summary[f"{model}_top1"] = results["metrics"][model]["top1"]
    return summary


def _taught_by(rows: dict[str, list[dict]], teacher: dict) -> list[float]:
    """The lowest and highest top-1 of the teachers the pair's runs learned from, as they recorded it (a teacher
    retrained for some runs, on another machine, is not the others'); the teacher's own results.json when no run
    recorded one."""
    values = [run["teacher_top1"] for method_runs in rows.values() for run in method_runs if "teacher_top1" in run]
    return [min(values), max(values)] if values else [teacher["top1"]] * 2


def _collected_runs(profile: Profile, output_dir: Path, screen_seeds: list[int], record: dict | None) -> list:
    """Every run of the profile, the screen at ``--screen_seeds``, the profile's seeds and those ``record`` holds,
    so that a process screening fewer seeds keeps what another one screened."""
    kept = {
        run["seed"]
        for methods in (record or {}).get("tuning", {}).values()
        for settings in methods.values()
        for row in settings.values()
        for run in row["runs"]
    }
    screened = sorted(set(screen_seeds) | set(profile.seeds) | kept)
    pairs, methods = list(profile.pairs), benchmark_methods()
    seeds = [*profile.seeds, *profile.more_seeds]
    return planned_runs(profile, output_dir, pairs, seeds, methods, BENCHMARK_PARTS, screened)


def _machines(record: dict | None) -> list[dict]:
    """The machines the collected runs trained on: those ``record`` names (runs kept from it), then this one."""
    # A record written before runs listed their machines names one, as "machine".
    machines = [] if record is None else list(record.get("machines") or [record["machine"]])
    here = machine_info()
    if all((machine["cpu"], machine["gpu"]) != (here["cpu"], here["gpu"]) for machine in machines):
        machines.append(here)
    return machines
