"""Does a long distillation keep its memory flat? Process RSS over a run that evaluates and checkpoints.

    .venv/bin/python -m benchmarks.memory                      # demo data, fbt, ~940 steps
    .venv/bin/python -m benchmarks.memory --report_only        # chart/table/README again

One :func:`hf_cakd.run.pipeline.distill` run (the demo's CNN teacher -> ViT student by default) with evaluation
and a checkpoint every ``--every`` steps (``save_total_limit=2``, so old checkpoints are rotated
away as in a real run). A ``TrainerCallback`` reads the process's resident set size (psutil) every
``--sample_every`` optimizer steps and right after each evaluation and save.

A leak shows as growth that goes on after the first evaluation and checkpoint have allocated their
buffers, so the summary compares the samples from the first save on: ``growth_after_first_save_mb``
(last minus first of them) and a least-squares ``slope_mb_per_1k_steps`` through them. The absolute
level depends on the machine and the allocator; the growth is what this measures.

Outputs (``--output_dir``, default ``benchmarks/memory/``): ``results.json`` (every sample), ``rss.png``
(RSS against step, eval/save steps marked) and ``table.md``, also put into ``README.md`` between
``<!-- benchmark-memory:start -->`` and ``<!-- benchmark-memory:end -->``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from transformers import TrainerCallback

from benchmarks.common import (
    BENCHMARKS_README,
    REPO,
    Schedule,
    benchmark_methods,
    pyplot,
    read_results,
    shown_path,
    training_arguments,
    write_results,
    write_table,
)
from hf_cakd.cli import setup_logging
from hf_cakd.run.pipeline import DataArguments, ModelArguments, distill

README_REGION = "benchmark-memory"


class RSSRecorder(TrainerCallback):
    """Samples this process's resident set size during training, tagged with step and event."""

    def __init__(self, sample_every: int):
        self.sample_every = sample_every
        self.process = psutil.Process()
        self.samples: list[dict] = []
        self.start = time.perf_counter()

    def record(self, step: int, event: str) -> None:
        rss_mb = self.process.memory_info().rss / 2**20
        self.samples.append(
            {"step": step, "event": event, "seconds": round(time.perf_counter() - self.start, 2), "rss_mb": rss_mb}
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.record(state.global_step, "train_begin")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.sample_every == 0:
            self.record(state.global_step, "step")

    def on_evaluate(self, args, state, control, **kwargs):
        self.record(state.global_step, "evaluate")

    def on_save(self, args, state, control, **kwargs):
        self.record(state.global_step, "save")

    def on_train_end(self, args, state, control, **kwargs):
        self.record(state.global_step, "train_end")


def summarise(samples: list[dict]) -> dict:
    first_save = next((i for i, s in enumerate(samples) if s["event"] == "save"), None)
    if first_save is None:
        raise ValueError("No checkpoint was saved during the run: lower --every or train longer.")
    steady = samples[first_save:]
    steps = [s["step"] for s in steady]
    rss = [s["rss_mb"] for s in steady]
    slope = statistics.linear_regression(steps, rss).slope if len(set(steps)) > 1 else 0.0
    return {
        "rss_at_train_begin_mb": samples[0]["rss_mb"],
        "rss_at_first_save_mb": steady[0]["rss_mb"],
        "first_save_step": steady[0]["step"],
        "rss_final_mb": samples[-1]["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in samples),
        "growth_after_first_save_mb": samples[-1]["rss_mb"] - steady[0]["rss_mb"],
        "slope_mb_per_1k_steps": 1000 * slope,
        "steps": samples[-1]["step"],
        "evaluations": sum(s["event"] == "evaluate" for s in samples),
        "saves": sum(s["event"] == "save" for s in samples),
    }


def run(options: argparse.Namespace, output_dir: str, recorder: RSSRecorder) -> dict:
    """The distillation, evaluating and checkpointing every ``--every`` steps, ``recorder`` sampling RSS."""
    models = ModelArguments(student=options.student, teacher=options.teacher)
    data = DataArguments(dataset=options.dataset)
    training_args = training_arguments(
        output_dir,
        options.method,
        schedule=Schedule(),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=256,
        eval_strategy="steps",
        eval_steps=options.every,
        save_strategy="steps",
        save_steps=options.every,
        save_total_limit=2,
        logging_steps=50,
        seed=options.seed,
    )
    return distill(models, data, training_args, callbacks=[recorder])


def markdown_table(results: dict) -> str:
    s, o = results["summary"], results["settings"]
    return "\n".join(
        [
            f"Memory over one `{o['method']}` run of {s['steps']} steps (`{o['dataset']}`, batch {o['batch_size']}, "
            f"{o['epochs']} epochs), evaluating and checkpointing every {o['every']} steps "
            f"({s['evaluations']} evaluations, {s['saves']} saves, `save_total_limit=2`); process RSS sampled every "
            f"{o['sample_every']} steps. Generated by `python -m benchmarks.memory`; chart: "
            "`benchmarks/memory/rss.png`.",
            "",
            "| RSS at train start | at the first save (step "
            f"{s['first_save_step']}) | final | peak | growth after the first save | slope |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {s['rss_at_train_begin_mb']:.0f} MB | {s['rss_at_first_save_mb']:.0f} MB | {s['rss_final_mb']:.0f} MB "
            f"| {s['rss_peak_mb']:.0f} MB | {s['growth_after_first_save_mb']:+.1f} MB "
            f"| {s['slope_mb_per_1k_steps']:+.1f} MB / 1k steps |",
            "",
        ]
    )


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    samples = results["samples"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s["step"] for s in samples], [s["rss_mb"] for s in samples], lw=1.2, label="RSS")
    for event, marker in (("evaluate", "o"), ("save", "s")):
        points = [s for s in samples if s["event"] == event]
        ax.scatter([s["step"] for s in points], [s["rss_mb"] for s in points], marker=marker, s=18, label=event)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("resident set size (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{results['settings']['method']} distillation: memory over a long run")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, output_dir: Path, readme: Path | None) -> str:
    plot(results, output_dir / "rss.png")
    return write_table(output_dir, markdown_table(results), readme, README_REGION)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    demo = REPO / "demo_data"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=str(demo / "models" / "resnet-teacher-cifar10"))
    parser.add_argument("--student", default=str(demo / "models" / "vit-student-config"))
    parser.add_argument("--dataset", default=str(demo / "cifar10"))
    parser.add_argument("--method", default="fbt", choices=benchmark_methods())
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--every", type=int, default=200, help="Evaluate and checkpoint every this many steps.")
    parser.add_argument("--sample_every", type=int, default=10, help="Read RSS every this many steps.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "memory"))
    parser.add_argument("--readme", default=str(BENCHMARKS_README))
    parser.add_argument("--no_readme", action="store_true")
    parser.add_argument("--report_only", action="store_true", help="Regenerate chart and tables from results.json.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    output_dir = Path(options.output_dir)
    readme = None if options.no_readme else Path(options.readme)
    if options.report_only:
        results = read_results(output_dir)
    else:
        setup_logging()
        recorder = RSSRecorder(options.sample_every)
        with tempfile.TemporaryDirectory(prefix="hf_cakd-memory-") as run_dir:  # checkpoints are not kept
            distilled = run(options, run_dir, recorder)
        command_line_only = ("output_dir", "readme", "no_readme", "report_only")
        settings = {k: v for k, v in vars(options).items() if k not in command_line_only}
        settings.update({key: shown_path(settings[key]) for key in ("teacher", "student", "dataset")})
        results = {
            "settings": settings,
            "summary": summarise(recorder.samples),
            "student_top1": distilled["metrics"].get("student", {}).get("top1"),
            "train_seconds": distilled["train_seconds"],
            "samples": recorder.samples,
        }
        write_results(output_dir, results)
    print(write_report(results, output_dir, readme))
    return results

