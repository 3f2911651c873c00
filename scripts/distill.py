#!/usr/bin/env python
"""Distil a teacher into a student on an image-classification dataset (``hf-cakd distill`` for ``accelerate launch``).

    accelerate launch scripts/distill.py --teacher google/vit-base-patch16-224 \\
        --student microsoft/resnet-18 --dataset uoft-cs/cifar10 --output_dir out/vit-to-resnet18

``--help`` lists the flags; the run itself is :func:`hf_cakd.distill` (hf_cakd/run/pipeline.py).
Exit codes: 0 done, 1 internal error, 2 usage, 3 input, 4 NaN/inf, 75 pre-empted (resumable).
"""

from hf_cakd.cli import distill_main
from hf_cakd.errors import run_cli

if __name__ == "__main__":
    run_cli(distill_main)
