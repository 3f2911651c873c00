#!/usr/bin/env python
"""Per-term losses of a fixed-seed 20-step run of every method, through the CLI: a refactor's parity check.

    .venv/bin/python -m benchmarks.parity.loss_snapshot --write benchmarks/parity/loss_snapshot.json
    .venv/bin/python -m benchmarks.parity.loss_snapshot --check benchmarks/parity/loss_snapshot.json
    .venv/bin/python -m benchmarks.parity.loss_snapshot --check benchmarks/parity/loss_snapshot.json --add_missing

Each run is ``scripts/distill.py`` on the embedded CIFAR-10 subset with the demo's config-only models
(a ResNet and a ViT, built from scratch with the seed), in both directions, every registered method at
its defaults, 20 steps of batch 16 on one CPU thread, logging every step. A teacher needs weights, so
each teacher is built from its config at seed 0 and saved first (random weights serve a parity check). ``--check`` fails (exit 1)
when any logged loss term differs from the snapshot by more than ``--atol`` (the log rounds to 4
decimals, so equal runs agree exactly); a method the snapshot lacks is named, and ``--add_missing`` adds
its runs to the snapshot once every other run agrees.

The values depend on the CPU as well as the code: on another machine the committed snapshot can drift by more
than 1e-4 after a few steps even at the commit that wrote it (seen on 2026-12-07, from step 3 on). There, write a
snapshot from the commit before the change (a ``git worktree``) to a file of its own and ``--check`` against that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import saved_with_weights
from hf_cakd.data import load_image_dataset
from hf_cakd.methods import METHODS

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "demo_data" / "models"
DATA = REPO / "demo_data" / "cifar10"
PAIRS = {
    "cnn_to_vit": (MODELS / "resnet-teacher-config", MODELS / "vit-student-config"),
    "vit_to_cnn": (MODELS / "vit-student-config", MODELS / "resnet-teacher-config"),
}
STEPS = 20


def run(pair: str, method: str, output_dir: Path, teacher: Path) -> list[dict]:
    student = PAIRS[pair][1]
    command = [
        sys.executable, str(REPO / "scripts" / "distill.py"), "--method", method, "--student", str(student),
        "--dataset", str(DATA), "--max_train_samples", "320", "--max_eval_samples", "16",
        "--max_steps", str(STEPS), "--per_device_train_batch_size", "16", "--logging_steps", "1",
        "--learning_rate", "1e-3", "--seed", "0", "--use_cpu", "--save_strategy", "steps", "--save_steps", str(STEPS),
        "--eval_strategy", "no",
        "--disable_tqdm", "true", "--report_to", "none", "--dataloader_num_workers", "0",
        "--output_dir", str(output_dir),
    ]
    if method != "none":
        command += ["--teacher", str(teacher)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env, cwd=REPO, capture_output=True)
    # The last checkpoint's trainer state keeps the log unformatted (the printed log has 4 significant digits).
    state = json.loads((output_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [
        {key: value for key, value in entry.items() if key == "step" or key == "loss" or key.startswith("loss_")}
        for entry in state["log_history"]
        if "loss" in entry
    ]


def snapshot() -> dict:
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair, (config, _) in PAIRS.items():
            teacher = saved_with_weights(config, load_image_dataset(str(DATA)).id2label, Path(tmp) / "teachers" / pair)
            for method in METHODS:  # every registered method
                print(f"{pair} {method}", file=sys.stderr, flush=True)
                losses.setdefault(pair, {})[method] = run(pair, method, Path(tmp) / pair / method, teacher)
    return losses


def differences(actual: dict, expected: dict, atol: float) -> list[str]:
    found = []
    for pair, methods in expected.items():
        for method, entries in methods.items():
            got = actual.get(pair, {}).get(method, [])
            if len(got) != len(entries):
                found.append(f"{pair}/{method}: {len(got)} logged steps, snapshot {len(entries)}")
                continue
            for old, new in zip(entries, got):
                for term in sorted(old.keys() | new.keys()):
                    if term not in old or term not in new:
                        found.append(f"{pair}/{method} step {old['step']}: term {term} only on one side")
                    elif abs(old[term] - new[term]) > atol:
                        found.append(f"{pair}/{method} step {old['step']} {term}: {new[term]} vs {old[term]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="Write the snapshot to this JSON file.")
    group.add_argument("--check", type=Path, help="Compare with this snapshot; exit 1 on a difference.")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--add_missing", action="store_true", help="With --check: add the runs the snapshot lacks, if the others agree.")
    args = parser.parse_args()
    losses = snapshot()
    if args.write:
        args.write.write_text(json.dumps(losses, indent=1) + "\n")
        return
    expected = json.loads(args.check.read_text())
    found = differences(losses, expected, args.atol)
    checked = sum(len(methods) for methods in expected.values())
    print("\n".join(found) or f"all {checked} runs in the snapshot agree within {args.atol}")
    missing = {pair: {m: runs for m, runs in methods.items() if m not in expected.get(pair, {})} for pair, methods in losses.items()}
    missing = {pair: methods for pair, methods in missing.items() if methods}
    if missing:
        print(f"not in the snapshot: {', '.join(f'{pair}/{m}' for pair, methods in missing.items() for m in methods)}")
    if missing and args.add_missing and not found:
        args.check.write_text(json.dumps({pair: expected.get(pair, {}) | missing.get(pair, {}) for pair in losses}, indent=1) + "\n")
        print(f"added to {args.check}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
