"""Does FBT beat KD, OFA and no distillation? Top-1 on real CIFAR-10, three heterogeneous pairs.

    .venv/bin/python -m benchmarks.accuracy --profile quick     # CPU, about 5 hours, 3 seeds
    .venv/bin/python -m benchmarks.accuracy --profile full --data /data/cifar10   # GPU, 3 seeds
    .venv/bin/python -m benchmarks.accuracy --profile smoke --output_dir /tmp/bench-smoke
    .venv/bin/python -m benchmarks.accuracy --profile quick --report_only   # chart/table/README again
    .venv/bin/python -m benchmarks.accuracy --profile headline --readme ''   # the CNN-student pairs
    .venv/bin/python -m benchmarks.accuracy --profile headline --recipe   # with the recipe for long runs (experiments.md)

What is run
-----------
**Data.** ``--data``: a CIFAR-10 parquet directory (``train.parquet``, ``test.parquet``; columns
``img``/``label``; default ``../shared/datasets/cifar10`` beside the repository when it exists, else
the Hub's ``uoft-cs/cifar10``, same schema) or any Hub id ``load_dataset`` takes. Models train on the first rows of the train
split (stored shuffled): students on ``train_samples``, teachers on ``teacher_train_samples``; every
model is evaluated on the *whole* test split (10,000 images), except in ``smoke``.

**Models.** All from scratch, sized for 32 px images, written as config-only directories
(``config.json`` + ``preprocessor_config.json`` with their resolution and mean/std) under
``<output_dir>/models/``; ``hf_cakd.load_classifier`` builds them from there, the way a user's own
config would be. Roles (``quick`` sizes; ``full`` in brackets):

- ``cnn_teacher``: transformers ResNet, basic blocks 2-2-2-2, widths 32-256 (2.80M parameters)
  [64-512, ResNet-18: 11.2M], 32 px;
- ``vit_teacher``: transformers ViT, patch 4, width 128, 6 layers, MLP x2 (0.81M) [ViT-S: 384,
  12 layers, MLP x4: 21M], 32 px;
- ``vit_student``: transformers ViT, patch 4, width 96, 6 layers, MLP x2 (0.46M) [ViT-Ti: 192,
  12 layers, MLP x4: 5.4M], 32 px;
- ``cnn_student``: transformers MobileNetV2, width x0.5 (0.70M) [x1.0: 2.2M], 32 px;
- ``mlp_student``: timm ``mixer_s16_224`` (8 blocks of width 512) through ``TimmWrapperConfig``,
  MLP ratios (0.25, 0.5) (2.55M) [(0.5, 2.0): 9.1M], 64 px [128 px].

timm's Mixer/ResMLP entry points fix patch size, width and depth (passing ``patch_size`` or
``embed_dim`` again is a ``TypeError``), but ``img_size`` and ``mlp_ratio`` may be set. At 32 px the
16 px patches would leave 2x2 tokens, so the MLP student sees the images upsampled (its
``preprocessor_config.json`` says 64 px: 4x4 tokens; 128 px in ``full``: 8x8 tokens, as many as a
patch-4 model at 32 px), and its MLP ratios are cut so that it fits the CPU budget. It is a plain
``TimmWrapperForImageClassification``: it saves and loads as a transformers model.

**Pairs.** ``cnn_to_vit`` (cnn_teacher -> vit_student), ``vit_to_cnn`` (vit_teacher ->
cnn_student), ``cnn_to_mlp`` (cnn_teacher -> mlp_student).

**Validation screen** (``TUNING``, first). The baselines' settings (kd's temperature; OFA's branches,
weight and gamma, the published recipe among them) and fbt's bridge (upsampling the CNN's 2x2 stage-3
map or not, on the pairs whose suffix runs on any grid: ``TUNING_PAIRS``) are screened on a validation
split: the last 1/``VALIDATION_FRACTION`` of the train split (CIFAR-10: rows 45,000-49,999, written once
as parquet into ``<output_dir>/validation_data/``). Students train on the same first rows as in the
table, at the profile's first seed into ``<output_dir>/tuning/<pair>/<method>/<setting>/`` and at each
other seed of ``--screen_seeds`` (seed by seed) into ``<setting>-seed<k>/`` beside it; the quick teachers
never see those rows (the full profile's train on all rows). results.json keeps each setting's runs with
their mean and std, and the screen's table shows the mean (± std and the count when several seeds): the
table's seeds are on the test split, so a changed default is backed by three seeds of this screen
(``--screen_seeds 0 1 2``). The table runs each method's default, which follows this screen
(benchmarks/accuracy/experiments.md); the test split never chooses a setting.

**Runs.** Each teacher is trained once by ``hf_cakd.run.pipeline.distill`` with ``method="none"``
(``teacher_epochs``) into ``<output_dir>/teachers/<role>/`` and reused while its ``results.json``
exists. Then, seed by seed (so an interrupted benchmark has whole seeds), every pair x method (every
registered method, ``hf_cakd.methods.METHODS``: ``none``, ``kd``, ``feature_kd``, ``fitnet``, ``ofa``,
``fbt``) is one ``distill`` call into ``<output_dir>/runs/<pair>/<method>/seed<k>/``, all with the same
schedule (``benchmarks.common.Schedule``: AdamW, cosine decay, 5% warm-up, weight decay 0.05,
``epochs``) and every method at its config's defaults; methods that need no teacher (``none``) get
none. A profile with ``more_seeds`` (``headline``: seeds 3 and 4) then trains those seeds for each pair's
method whose top-1 std over the first seeds exceeds ``more_seeds_above_std`` (1 point). ``kd`` and ``feature_kd`` are the losses of timm's ``LogitDistillationTask`` (T=4) and
``FeatureDistillationTask`` (tests/test_timm_peers.py), the peers a timm user would pick. Last, the
paper's ablation (``ABLATIONS``: fbt without InfoNCE, without the logit loss, without T -> F,
without F -> S; the first seed) into ``<output_dir>/ablation/<pair>/<variant>/``.

A run whose ``results.json`` exists is reused, so an interrupted benchmark resumes where it stopped
(delete a directory to redo it); so is a run the ``results.json`` in ``--output_dir`` holds when it was
written for the same schedule and committed teachers (their weights' digest: a retrained committed teacher
makes every recorded run stale, and its run folders belong in a fresh ``--output_dir``; run folders are not
kept in git: a fresh clone resumes from the committed results, and trains a teacher again only when a run
left to train needs it). ``--pairs``,
``--seeds``, ``--methods``, ``--ablations``, ``--settings``, ``--screen_seeds`` and ``--parts`` train a part
only, so that two single-threaded processes can share a 2-core machine (``OMP_NUM_THREADS=1``);
every process, and ``--collect_only``, gathers all finished runs into ``results.json``, listing the
runs not finished yet under ``missing`` (and under the table).

**Outputs** (``--output_dir``, default ``benchmarks/accuracy/<profile>/``): ``results.json`` (per pair
the teacher's top-1/top-5, per method top-1/top-5 per seed, mean, std, train seconds; the same per
screened setting under ``tuning``; a results.json that kept one run per setting is read too), ``accuracy.png``
(grouped bars per pair, a dashed line at the teacher's top-1, error bars over seeds), the ablation and
validation-screen tables, and
``table.md``, which is also put into ``benchmarks/README.md`` between ``<!-- benchmark-accuracy-<profile>:start -->`` and
``<!-- benchmark-accuracy-<profile>:end -->`` (not for ``smoke`` or ``--recipe``, unless ``--readme`` is given).
``--recipe`` writes into ``<profile>-recipe/``; given ``<profile>/results.json`` beside it, its table compares
each method with and without the recipe (region ``benchmark-accuracy-<profile>-recipe``).

Profiles and the quick profile's budget
---------------------------------------
One line each in ``--profile``'s help (``Profile.description`` in ``profiles.py``); in full:

- ``smoke``: the quick models, 256 train / 128 test images, 2 steps per run: tests this script in
  under a minute. It then *times* the quick profile on this machine (two training steps of every
  run at its batch size, the input pipeline, evaluation forward passes) and prints the projected
  wall time of ``--profile quick``: ``results.json["quick_estimate"]``.
- ``quick`` (2-core CPU, about 5 hours): students 5 epochs on the first 10,000 training images,
  teachers 8 epochs on the first 20,000 (a teacher should know more than its student, as the
  paper's pretrained teachers do: on the validation screens of experiments.md each teacher beat
  its students trained alone by 19 to 27 points), batch 128, 3 seeds, evaluation on all 10,000
  test images. Settings were chosen on a validation split of the training images (the
  validation screen above, and FBT's options: benchmarks/accuracy/experiments.md), never on this test split.
- ``headline`` (2-core CPU): the CNN-student direction shaped like the headline call (an attention
  teacher whose token grid is the CNN student's stage-3 grid, as ViT-B/16's and ResNet-18's are at
  224 px): the committed teacher ``benchmarks/accuracy/teachers/vit-p16-64`` (a ViT with 4x4 tokens at
  64 px, trained alone once by ``python -m benchmarks.accuracy.teachers vit-p16-64``, never retrained
  here) -> a ResNet-18-layout student (widths 4-32) and a MobileNetV2 x0.25 (expansion 2, last layer
  x0.25), both at 64 px (stage 3: 4x4) and both more than 20 points under the teacher when trained alone
  (benchmarks/accuracy/experiments.md); students on all 45,000 training rows before the validation split; its screen
  (``HEADLINE_TUNING``) holds fbt's candidates for CNN students beside the student alone and ofa.
- ``full`` (one GPU): the larger models, all 50,000 training images, teachers 100 epochs,
  students 50 epochs, batch 256, 3 seeds, 8 data-loading workers, bf16 on CUDA.

The quick budget, as the smoke profile measured it on this machine (2-core Xeon, idle, 2 torch
threads, batch 128, data decoded in the training process, so a step's time and its batch's
decoding add up). A run costs ``steps x s/step + images seen / pipeline rate + 10,000 x (1/student
forward + 1/teacher forward + 1/pipeline rate) + 5 s set-up``. Per run (minutes):

    pair          none  feature_kd  fitnet  kd    ofa   fbt
    cnn_to_vit    2.2   2.3         2.2     2.3   2.5   2.8
    vit_to_cnn    1.1   2.0         2.1     2.0   2.0   2.7
    cnn_to_mlp    5.1   5.2         5.2     5.3   5.5   7.4

each 395 steps (10,000 images x 5 epochs); the teachers 1,256 steps (20,000 x 8): ResNet 2.5 min,
ViT 9.2 min. In all: 192 minutes for the 3-seed table, 52 for the ablation and about 75 for the
validation screen (6 runs of kd/ofa per pair, 2 of fbt on the ViT pairs), about 5 hours on the idle machine; two
single-threaded processes (``--pairs``/``--seeds``) shorten the wall time.
One or two data-loading workers made runs 5-15% slower on two cores, so ``quick`` uses none. The
MLP student dominates: a 512-wide Mixer is the slowest model per image on a CPU, hence its cut MLP
ratios and 64 px. CNN final maps stay 1x1 at 32 px (ImageNet-style stems): 64 px inputs for the
CNNs would have cost about four times their compute, past the budget.

Timings depend on what else runs on the machine; the estimate is for an idle one.

Code
----
``profiles.py`` (pairs, model recipes, profiles, the ablation and the screened settings), ``runs.py`` (the
planned runs, those left, where each goes, training them), ``results.py`` (results.json from run folders and
the committed record), ``estimate.py`` (the smoke profile's projection), ``report.py`` (tables, chart, README
region); this file is the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import BENCHMARKS_README, REPO, benchmark_methods, read_results, write_results
from hf_cakd.cli import setup_logging

from .estimate import estimate_profile, estimate_table
from .profiles import ESTIMATED_PROFILE, PROFILES, with_recipe, write_model_dirs
from .report import write_report
from .results import collect_results
from .runs import BENCHMARK_PARTS, run_benchmark, with_screen_rows


LOCAL_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"
HUB_CIFAR10 = "uoft-cs/cifar10"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="; ".join(f"{name}: {profile.description}" for name, profile in PROFILES.items()) + ".",
    )
    parser.add_argument(
        "--data",
        default=str(LOCAL_CIFAR10) if LOCAL_CIFAR10.is_dir() else HUB_CIFAR10,
        help=f"CIFAR-10 parquet directory, or a Hub dataset id (default: {LOCAL_CIFAR10} when it exists, else "
        f"{HUB_CIFAR10}).",
    )
    parser.add_argument("--output_dir", type=Path, help="Default: benchmarks/accuracy/<profile>[-recipe].")
    parser.add_argument(
        "--recipe",
        action="store_true",
        help="Every student run with the recipe for long runs (profiles.RECIPE_DATA and an EMA of the student, "
        "its decay scaled to the schedule); the README is left alone unless --readme is given.",
    )
    pairs = {pair for profile in PROFILES.values() for pair in profile.pairs}
    ablations = {variant for profile in PROFILES.values() for variant in profile.ablations}
    settings = {setting for profile in PROFILES.values() for each in profile.tuning.values() for setting in each}
    parser.add_argument("--pairs", nargs="+", choices=sorted(pairs), help="Train only these pairs (default: all).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Train only these seeds (default: the profile's).")
    parser.add_argument(
        "--methods", nargs="+", choices=benchmark_methods(), help="Train only these methods (default: all)."
    )
    parser.add_argument(
        "--ablations", nargs="+", choices=sorted(ablations), help="Train only these ablation variants (default: all)."
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=sorted(settings),
        help="Train only these settings of the validation screen (default: all).",
    )
    parser.add_argument(
        "--screen_seeds",
        nargs="+",
        type=int,
        help="Train the validation screen at each of these seeds (default: the profile's first), so that a setting "
        "chosen on it stands on more than one seed's noise.",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=BENCHMARK_PARTS,
        default=list(BENCHMARK_PARTS),
        help="tuning: the screened settings (TUNING) on the validation split, --screen_seeds; table: every method x "
        "seed; ablation: fbt with one part off, first seed (default: all three).",
    )
    parser.add_argument("--report_only", action="store_true", help="Chart, table and README from results.json.")
    parser.add_argument(
        "--collect_only",
        action="store_true",
        help="Gather the finished runs under --output_dir into results.json, then report; train nothing.",
    )
    parser.add_argument("--readme", type=Path, help="Where the table goes (default: benchmarks/README.md, not for smoke).")
    parser.add_argument("--no_readme", action="store_true", help="Leave benchmarks/README.md alone.")
    options = parser.parse_args(argv)
    unknown = set(options.pairs or ()) - set(PROFILES[options.profile].pairs)
    if unknown:
        parser.error(f"--pairs {' '.join(sorted(unknown))}: not pairs of --profile {options.profile}")
    default_dir = options.profile + ("-recipe" if options.recipe else "")
    options.output_dir = options.output_dir or REPO / "benchmarks" / "accuracy" / default_dir
    if options.readme is None and not options.no_readme and options.profile != "smoke" and not options.recipe:
        options.readme = BENCHMARKS_README
    if options.no_readme:
        options.readme = None
    if not options.report_only and Path(options.data).is_dir() and not Path(options.data, "train.parquet").is_file():
        parser.error(f"--data {options.data} holds no train.parquet: pass the CIFAR-10 parquet directory.")
    return options


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    if options.report_only:
        results = with_screen_rows(read_results(options.output_dir))
    else:
        setup_logging()
        options.output_dir.mkdir(parents=True, exist_ok=True)
        profile = with_recipe(PROFILES[options.profile]) if options.recipe else PROFILES[options.profile]
        models = write_model_dirs(profile, options.output_dir / "models")
        if not options.collect_only:
            run_benchmark(profile, options, models)
        results = collect_results(options.profile, profile, options, models)
        if options.profile == "smoke":
            estimate = estimate_profile(PROFILES[ESTIMATED_PROFILE], options)
            results[f"{ESTIMATED_PROFILE}_estimate"] = estimate
        write_results(options.output_dir, results)
    without_recipe = options.output_dir.with_name(options.profile) if options.recipe else None
    if without_recipe is not None and not (without_recipe / "results.json").is_file():
        print(f"[benchmark] no {without_recipe}/results.json to compare the recipe with: its own table only.")
        without_recipe = None
    print(write_report(results, options.output_dir, options.readme, without_recipe and read_results(without_recipe)))
    estimate = results.get(f"{ESTIMATED_PROFILE}_estimate")
    if estimate:
        print(f"Projected wall time of --profile {ESTIMATED_PROFILE} on this machine:\n")
        print(estimate_table(estimate))
    return results
