"""The accuracy benchmark's report: the README table (with the ablation and validation-screen tables) and the chart."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from benchmarks.common import REPO, benchmark_methods, pyplot, write_table
from hf_cakd.methods.base import option_text

from .profiles import ABLATED_METHOD, PROFILES, VALIDATION_FRACTION


README_REGION = "benchmark-accuracy"
COMMAND = ".venv/bin/python -m benchmarks.accuracy --profile {profile}"
PEER_NOTES = {  # methods that are another library's recipe, and the test that shows it
    "kd": "`kd` computes timm's `LogitDistillationTask` loss (T=4, weights 1 and 1)",
    "feature_kd": "`feature_kd` timm's `FeatureDistillationTask` loss (pooled pre-logits MSE through a learned "
    "projection, weight 5)",
}


def _methods(results: dict) -> list[str]:
    """The methods with at least one finished run, in the benchmark's order."""
    present = {method for pair in results["pairs"].values() for method in pair["methods"]}
    return [method for method in benchmark_methods() if method in present]


def _cell(row: dict | None, key: str, seeds: int, bold: bool = False) -> str:
    """``mean ± std`` over the finished seeds, with their count when some are missing."""
    if row is None or key not in row:
        return "-"
    summary, done = row[key], len(row["runs"])
    text = f"{100 * summary['mean']:.2f}" + (f" ± {100 * summary['std']:.2f}" if done > 1 else "")
    text = f"**{text}**" if bold else text
    return text + (f" ({done}/{seeds} seeds)" if done < seeds else f" ({done} seeds)" if done > seeds else "")


def _more_seeds(profile_name: str) -> str:
    profile = PROFILES[profile_name]
    if not profile.more_seeds:
        return ""
    total = len(profile.seeds) + len(profile.more_seeds)
    points = 100 * profile.more_seeds_above_std
    return f", {total} where their std exceeds {points:g} point{'' if points == 1 else 's'}"


def _length(sched: dict, samples: int | None, epochs: float) -> str:
    """How long a model trained: epochs over how many images (or the step cap of the smoke profile)."""
    images = f"{samples:,}" if samples else "all 50,000"
    if sched["max_steps"] > 0:
        return f"{sched['max_steps']} steps on {images} images"
    return f"{epochs:g} epoch{'s' if epochs != 1 else ''} on {images} images"


def _teachers_trained(profile: str, sched: dict) -> str:
    """How the profile's teachers were made: trained by the benchmark, or committed (trained alone once)."""
    committed = sorted(PROFILES[profile].committed_teachers.values())
    if committed:
        folders = ", ".join(f"`benchmarks/accuracy/teachers/{name}`" for name in committed)
        return f"the committed teacher {folders} (trained alone once: `python -m benchmarks.accuracy.teachers {' '.join(committed)}`)"
    return f"teachers {_length(sched, sched['teacher_train_samples'], sched['teacher_epochs'])}"


def _training_minutes(results: dict) -> float:
    """Training time of the teachers and of every run, the ablation and the validation screen included
    (resumed benchmarks count the reused runs too)."""
    seconds = sum(teacher["train_seconds"] for teacher in results["teachers"].values())
    for pair in results["pairs"].values():
        seconds += sum(run["train_seconds"] for row in pair["methods"].values() for run in row["runs"])
    seconds += sum(run["train_seconds"] for variants in results.get("ablation", {}).values() for run in variants.values())
    seconds += sum(run["train_seconds"] for run in _screen_runs(results))
    return seconds / 60


def _screen_runs(results: dict) -> list[dict]:
    """Every run of the validation screen, all pairs, methods, settings and seeds."""
    per_method = [settings for methods in results.get("tuning", {}).values() for settings in methods.values()]
    return [run for settings in per_method for row in settings.values() for run in row["runs"]]


def _params(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def _link(path: Path, start: Path) -> str | None:
    """``path`` relative to ``start`` when both lie in the repository (a README link), else None."""
    path, start = path.resolve(), start.resolve()
    return os.path.relpath(path, start) if path.is_relative_to(REPO) and start.is_relative_to(REPO) else None


def _teacher_cell(top1_range: list[float]) -> str:
    low, high = (f"{100 * value:.2f}" for value in top1_range)
    return low if low == high else f"{low}-{high}"


def _hardware(machine: dict) -> str:
    """``cpu (AMD EPYC, 2 cores)`` or ``cuda (NVIDIA H100)``."""
    detail = machine["gpu"] or f"{machine['cpu']}, {machine['cpu_count']} cores"
    return f"{machine['device']} ({detail})"


def markdown_table(results: dict, chart: str | None = None) -> str:
    """The README region: settings, one row per pair, one column per method, FBT's assistant F."""
    methods = _methods(results)
    sched = results["schedule"]
    seeds = len(sched["seeds"])
    hardware = " and ".join(map(_hardware, results["machines"]))
    evaluation = f"{sched['eval_samples']:,}" if sched["eval_samples"] else "all 10,000"
    baselines = [m for m in methods if m != "fbt"]
    peers = [note for method, note in PEER_NOTES.items() if method in methods]
    lines = [
        f"Top-1 accuracy (%) on CIFAR-10 ({evaluation} test images), models from scratch, profile "
        f"`{results['profile']}`: students {_length(sched, sched['train_samples'], sched['epochs'])}, "
        f"{_teachers_trained(results['profile'], sched)}; batch {sched['batch_size']}, "
        f"AdamW lr {sched['learning_rate']:g}, cosine; "
        f"{seeds} seed{'s' if seeds > 1 else ''}{' (mean ± std)' if seeds > 1 else ''}{_more_seeds(results['profile'])}; "
        "every method at hf_cakd's "
        f"default flags, `none` is the student trained alone"
        + (f"; {' and '.join(peers)} (tests/test_timm_peers.py)" if peers else "")
        + f". F is FBT's assistant, evaluated like the student. Trained on {hardware}, "
        f"{_training_minutes(results):.0f} min of training in all. Reproduce: `{COMMAND.format(profile=results['profile'])}` "
        "(`--profile full` on a GPU; see benchmarks/accuracy/run.py).",
    ]
    if methods:  # a folder holding the validation screen alone has no table run
        lines += ["", *_method_tables(results, methods, baselines, seeds)]
    if results.get("ablation"):
        lines += ["", *ablation_table(results)]
    if results.get("tuning"):
        lines += ["", *tuning_table(results)]
    if results.get("missing"):
        lines += ["", f"Not finished yet ({len(results['missing'])} runs): " + ", ".join(results["missing"]) + "."]
    if chart:
        lines += ["", f"![Top-1 per pair and method]({chart})"]
    return "\n".join(lines) + "\n"


def _method_tables(results: dict, methods: list[str], baselines: list[str], seeds: int) -> list[str]:
    """Top-1 per pair and method (fbt's gain, its F), then each run's training time."""
    models = results["models"]
    lines = [
        "| pair | teacher -> student | teacher | " + " | ".join(methods) + " | fbt - best other | F (fbt) |",
        "| --- | --- | ---: |" + " ---: |" * len(methods) + " ---: | ---: |",
    ]
    for name, pair in results["pairs"].items():
        teacher, student = models[pair["teacher"]], models[pair["student"]]
        rows = pair["methods"]
        means = {m: rows[m]["top1"]["mean"] for m in methods if m in rows}
        best = max(means.values(), default=None)  # None: no run of this pair finished yet
        cells = [_cell(rows.get(m), "top1", seeds, bold=means.get(m) == best) for m in methods]
        others = [means[m] for m in baselines if m in means]
        gain = f"{100 * (means['fbt'] - max(others)):+.2f}" if "fbt" in means and others else "-"
        lines.append(
            f"| {name} | {teacher['name']} ({_params(teacher['params'])}, {teacher['image_size']} px) -> "
            f"{student['name']} ({_params(student['params'])}, {student['image_size']} px) "
            f"| {_teacher_cell(pair['teacher_top1_range'])} | " + " | ".join(cells) + f" | {gain} | "
            + _cell(rows.get("fbt"), "assistant_top1", seeds) + " |"
        )
    lines += [
        "",
        "Training time per run (minutes, mean over seeds):",
        "",
        "| pair | " + " | ".join(methods) + " |",
        "| --- |" + " ---: |" * len(methods),
    ]
    for name, pair in results["pairs"].items():
        minutes = [
            f"{pair['methods'][m]['train_seconds']['mean'] / 60:.1f}" if m in pair["methods"] else "-" for m in methods
        ]
        lines.append(f"| {name} | " + " | ".join(minutes) + " |")
    return lines


def ablation_table(results: dict) -> list[str]:
    """fbt with one part off against full fbt, both at the profile's first seed."""
    first_seed = results["schedule"]["seeds"][0]
    ablations = PROFILES[results["profile"]].ablations
    lines = [
        f"Ablation of `{ABLATED_METHOD}` (seed {first_seed} only; differences under about one point are within "
        "a seed's noise): student top-1 (%), change against full fbt at the same seed, F's top-1.",
        "",
        "| pair | full fbt | " + " | ".join(ablations) + " |",
        "| --- | ---: |" + " ---: |" * len(ablations),
    ]
    for pair, variants in results["ablation"].items():
        full_runs = results["pairs"].get(pair, {}).get("methods", {}).get(ABLATED_METHOD, {}).get("runs", [])
        full = next((run for run in full_runs if run["seed"] == first_seed), None)
        cells = []
        for variant in ablations:
            run = variants.get(variant)
            if run is None:
                cells.append("-")
                continue
            if run.get("repeats_full"):
                cells.append("= full fbt (off by default here)")
                continue
            change = f" ({100 * (run['top1'] - full['top1']):+.2f})" if full else ""
            assistant = f", F {100 * run['assistant_top1']:.2f}" if "assistant_top1" in run else ""
            cells.append(f"{100 * run['top1']:.2f}{change}{assistant}")
        full_cell = f"{100 * full['top1']:.2f}, F {100 * full['assistant_top1']:.2f}" if full else "-"
        lines.append(f"| {pair} | {full_cell} | " + " | ".join(cells) + " |")
    return lines


def tuning_table(results: dict) -> list[str]:
    """The screened settings on the validation split, one row per method and setting: the mean over the seeds
    trained, the best mean per pair bold, F's mean beside FBT's student."""
    rows = results["tuning"]
    pairs = list(rows)
    seeds = sorted({run["seed"] for run in _screen_runs(results)})
    lines = [
        f"Validation screen (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; students trained as "
        f"in the table, evaluated on the last 1/{VALIDATION_FRACTION} of the train split, on which no student "
        "trains; the table runs each method's default): student top-1 (%)"
        + (", mean ± std over the seeds trained." if len(seeds) > 1 else "."),
        "",
        "| method | setting | " + " | ".join(pairs) + " | mean |",
        "| --- | --- |" + " ---: |" * (len(pairs) + 1),
    ]
    for method, settings in _screened_settings(results).items():
        best = {
            pair: max((row["top1"]["mean"] for row in rows[pair].get(method, {}).values()), default=None)
            for pair in pairs
        }
        for setting, options in settings.items():
            screened = [rows[pair].get(method, {}).get(setting) for pair in pairs]
            cells = [
                _screen_cell(row, row is not None and row["top1"]["mean"] == best[pair]) for pair, row in zip(pairs, screened)
            ]
            mean = f"{100 * statistics.fmean(row['top1']['mean'] for row in screened):.2f}" if all(screened) else "-"
            retired = options is None
            if retired:  # the flags as the run that recorded it spelled them
                options = next(row for row in screened if row is not None).get("options")
            flags = ": " + " ".join(f"`--{key} {option_text(value)}`" for key, value in options.items()) if options else " (default)"
            flags += " (recorded; no longer screened)" if retired else ""
            lines.append(f"| {method} | {setting}{flags} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def _screened_settings(results: dict) -> dict[str, dict[str, dict | None]]:
    """The profile's screened settings per method ({setting: options}), then the settings the record holds that
    the profile no longer screens (options None: the record has them)."""
    settings = {method: dict(each) for method, each in PROFILES[results["profile"]].tuning.items()}
    for methods in results["tuning"].values():
        for method, rows in methods.items():
            for setting in rows:
                settings.setdefault(method, {}).setdefault(setting, None)
    return settings


def _screen_cell(row: dict | None, bold: bool) -> str:
    """A screened setting on one pair: ``mean ± std (n seeds)``, or the one run's top-1; F's mean beside it."""
    if row is None:
        return "-"
    done = len(row["runs"])
    text = _cell(row, "top1", done, bold) + (f" ({done} seeds)" if done > 1 else "")
    return text + (f", F {100 * row['assistant_top1']['mean']:.2f}" if "assistant_top1" in row else "")


def plot(results: dict, path: Path) -> None:
    """Grouped bars: one group per pair, one bar per method, a dashed line at the teacher's top-1."""
    plt = pyplot()
    methods = _methods(results)
    pairs = list(results["pairs"].items())
    seeds = len(results["schedule"]["seeds"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.2 + 2.4 * len(pairs), 4.2))
    for i, method in enumerate(methods):
        offsets = [p + (i - (len(methods) - 1) / 2) * width for p in range(len(pairs))]
        rows = [pair["methods"].get(method) for _, pair in pairs]
        means = [100 * row["top1"]["mean"] if row else float("nan") for row in rows]
        errors = [100 * row["top1"]["std"] if row else 0.0 for row in rows] if seeds > 1 else None
        bars = ax.bar(offsets, means, width, yerr=errors, capsize=3, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    for p, (_, pair) in enumerate(pairs):
        teacher = 100 * max(pair["teacher_top1_range"])
        ax.hlines(teacher, p - 0.45, p + 0.45, colors="black", linestyles="--", label="teacher" if p == 0 else None)
        ax.annotate(f"{teacher:.1f}", (p + 0.45, teacher), xytext=(2, 0), textcoords="offset points", fontsize=7)
    ax.set_xticks(range(len(pairs)), [name.replace("_", " ") for name, _ in pairs])
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"CIFAR-10, profile {results['profile']}" + (f", mean ± std of {seeds} seeds" if seeds > 1 else ""))
    ax.legend(ncols=len(methods) + 1, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.28))
    ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def recipe_table(plain: dict, recipe: dict) -> str:
    """The recipe for long runs against the same runs without it (same profile, seeds and teachers' schedule):
    per pair and method, the student's top-1 either way, the recipe's EMA of the student, what the recipe
    changed (the better of student and EMA, minus the student without it), and the method's gain over the
    student trained alone (``none``) without and with the recipe."""
    sched, seeds = recipe["schedule"], len(recipe["schedule"]["seeds"])
    settings = recipe["schedule"]["recipe"]
    flags = " ".join(f"--{key} {value}" for key, value in (settings["data"] | settings["training"]).items())
    evaluation = f"{sched['eval_samples']:,}" if sched["eval_samples"] else "all 10,000"
    lines = [
        f"The recipe for long runs against the same runs without it: top-1 (%) on CIFAR-10 ({evaluation} test "
        f"images), profile `{recipe['profile']}` "
        f"(students {_length(sched, sched['train_samples'], sched['epochs'])}), "
        f"{seeds} seed{'s' if seeds > 1 else ''}{' (mean ± std)' if seeds > 1 else ''}. The recipe is `{flags}` on "
        "every student run (teachers train without it); EMA is its average of the student, evaluated beside it. "
        f"Reproduce: `{COMMAND.format(profile=recipe['profile'])} --recipe` and the same without `--recipe`.",
        "",
        "| pair | teacher (without / with) | method | without the recipe | with the recipe | its EMA "
        "| best with - without | over `none`, without / with |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, pair in recipe["pairs"].items():
        without = plain["pairs"].get(name, {"methods": {}, "teacher_top1_range": None})
        teachers = " / ".join(
            _teacher_cell(r) if r else "-" for r in (without["teacher_top1_range"], pair["teacher_top1_range"])
        )
        for method in [m for m in benchmark_methods() if m in pair["methods"]]:
            row, base = pair["methods"][method], without["methods"].get(method)
            best = max(row["top1"]["mean"], row.get("student_ema_top1", row["top1"])["mean"])
            change = f"{100 * (best - base['top1']['mean']):+.2f}" if base else "-"
            over_none = " / ".join(
                f"{100 * (rows[method]['top1']['mean'] - rows['none']['top1']['mean']):+.2f}"
                if method in rows and "none" in rows else "-"
                for rows in (without["methods"], pair["methods"])
            )
            lines.append(
                f"| {name} | {teachers} | {method} | {_cell(base, 'top1', seeds)} | {_cell(row, 'top1', seeds)} "
                f"| {_cell(row, 'student_ema_top1', seeds)} | {change} | {over_none} |"
            )
    return "\n".join(lines) + "\n"


def write_report(results: dict, output_dir: Path, readme: Path | None, without_recipe: dict | None = None) -> str:
    """table.md and the chart in ``output_dir``, the README region ``benchmark-accuracy-<profile>``. A ``--recipe`` run given the results of the
    same profile without it (``without_recipe``) writes their comparison instead, into ``...-<profile>-recipe``."""
    if without_recipe is not None:
        table = recipe_table(without_recipe, results)
        return write_table(output_dir, table, readme, f"{README_REGION}-{results['profile']}-recipe")
    chart = output_dir / "accuracy.png"
    charted = bool(_methods(results))  # a folder holding the validation screen alone has no table run to chart
    if charted:
        plot(results, chart)
    readme_table = markdown_table(results, chart=_link(chart, readme.parent) if charted else None) if readme else None
    table = markdown_table(results, chart=chart.name if charted else None)
    return write_table(output_dir, table, readme, f"{README_REGION}-{results['profile']}", readme_table)
