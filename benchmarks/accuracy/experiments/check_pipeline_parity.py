"""Train one student two ways, a plain timm/torch loop and hf_cakd's CLI, and compare their top-1.

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m benchmarks.accuracy.experiments.check_pipeline_parity \\
        --data /work/shared/datasets/cifar10 --out benchmarks/accuracy/parity/baseline.json

(A) ``plain``: ``timm.create_model``, torchvision reflect-pad 4 / random crop 32 / flip,
``ToTensor`` + normalisation (no resize), ``timm.optim.create_optimizer_v2`` (AdamW; no weight
decay on 1-d parameters and the model's ``no_weight_decay()`` set), per-step linear warm-up then
cosine to 0, no gradient clipping, cross-entropy.
(B) ``ours``: ``hf_cakd.distill`` (what ``hf-cakd distill`` runs) with ``method="none"`` and the same data
rows, batch size, learning rate, weight decay, warm-up, schedule, epochs and seed.

Both train on the first ``--train_samples`` rows of the train split and report top-1 on the first
``--eval_samples`` rows of the test split. ``--ours_override key=value`` (a JSON value) changes one
of (B)'s training arguments (say ``--ours_override max_grad_norm=0``), ``--ours_timm_decay_groups`` gives (B) timm's weight-decay groups, and the
``--plain_*`` switches move (A) towards (B) one difference at a time. ``--probe`` trains nothing:
it prints what each side feeds the model, its parameter groups and its learning rate per step.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import PIL.Image
import pyarrow.parquet as pq
import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from hf_cakd import DistillationTrainingArguments, distill
from hf_cakd.pipeline import DataArguments, ModelArguments

STUDENT = "timm:vit_tiny_patch16_224"
STUDENT_ARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3, "mlp_ratio": 2.0}


@dataclass
class ParityConfig:
    data: str = "/work/shared/datasets/cifar10"
    student: str = STUDENT
    student_model_args: dict = field(default_factory=lambda: dict(STUDENT_ARGS))
    train_samples: int = 10_000
    eval_samples: int = 10_000
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # a fraction of all steps, as --warmup_steps 0.05
    seed: int = 0
    ours_overrides: dict = field(default_factory=dict)
    ours_timm_decay_groups: bool = False
    plain_clip_grad: float = 0.0  # > 0: clip the gradient norm as the Trainer does
    plain_hf_decay_groups: bool = False  # the Trainer's groups (biases, LayerNorm) instead of timm's
    plain_hf_init: bool = False  # the model as hf_cakd builds it (TimmWrapper init) instead of timm's


# ---- data ----


class ParquetImages(Dataset):
    """The first ``limit`` rows of a CIFAR-style parquet file (img.bytes, label), transformed."""

    def __init__(self, path: str, limit: int, transform):
        table = pq.read_table(path).slice(0, limit)
        self.images = [row["bytes"] for row in table.column("img").to_pylist()]
        self.labels = table.column("label").to_pylist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> PIL.Image.Image:
        return PIL.Image.open(io.BytesIO(self.images[i])).convert("RGB")

    def __getitem__(self, i: int):
        return self.transform(self.image(i)), self.labels[i]


def plain_transforms(size: int, mean, std) -> tuple[T.Compose, T.Compose]:
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train = T.Compose([T.RandomCrop(size, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(), *normalize])
    return train, T.Compose(normalize)


# ---- (A) the plain loop ----


def warmup_cosine(total: int, warmup: int):
    """The LR factor at each step, as transformers' ``get_cosine_schedule_with_warmup``."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def build_plain_model(cfg: ParityConfig) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    if cfg.plain_hf_init or not cfg.student.startswith("timm:"):
        from hf_cakd import load_classifier
        from hf_cakd.backbones.registry import unwrap_timm

        model = load_classifier(cfg.student, {i: str(i) for i in range(10)}, model_args=cfg.student_model_args or None)
        timm_model = unwrap_timm(model)
        return timm_model if timm_model is not model else _LogitsOnly(model)
    return timm.create_model(cfg.student.removeprefix("timm:"), num_classes=10, **cfg.student_model_args)


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).logits


def plain_optimizer(cfg: ParityConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if not cfg.plain_hf_decay_groups:
        return create_optimizer_v2(model, "adamw", lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    decay = set(hf_decay_parameter_names(model))
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def hf_decay_parameter_names(model: torch.nn.Module) -> list[str]:
    from transformers.trainer_pt_utils import get_parameter_names

    names = get_parameter_names(model, [torch.nn.LayerNorm], ["bias", "layernorm", "rmsnorm", r"(?:^|\.)norm(?:$|\.)"])
    return list(names)


def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            correct += (model(images).argmax(-1) == labels).sum().item()
    return correct / len(dataset)


def run_plain(cfg: ParityConfig) -> dict:
    model = build_plain_model(cfg)
    data_cfg = timm.data.resolve_data_config({}, model=model) if hasattr(model, "pretrained_cfg") else {}
    mean, std = data_cfg.get("mean", (0.5, 0.5, 0.5)), data_cfg.get("std", (0.5, 0.5, 0.5))
    train_tf, eval_tf = plain_transforms(32, mean, std)
    train = ParquetImages(os.path.join(cfg.data, "train.parquet"), cfg.train_samples, train_tf)
    test = ParquetImages(os.path.join(cfg.data, "test.parquet"), cfg.eval_samples, eval_tf)
    loader = DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed)
    )
    total = cfg.epochs * len(loader)
    optimizer = plain_optimizer(cfg, model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, math.ceil(cfg.warmup * total)))
    start, losses = time.perf_counter(), []
    for _ in range(cfg.epochs):
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.plain_clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.plain_clip_grad)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    seconds = time.perf_counter() - start
    last = losses[-len(loader) :]
    return {"top1": evaluate(model, test, 2 * cfg.batch_size), "train_seconds": round(seconds, 1),
            "last_epoch_loss": sum(last) / len(last), "steps": total}  # fmt: skip


# ---- (B) our pipeline ----


def ours_arguments(cfg: ParityConfig, output_dir: str):
    """(B)'s run as hf_cakd.distill's three argument dataclasses; ``ours_overrides`` replace training fields."""
    model_args = ModelArguments(student=cfg.student, student_model_args=cfg.student_model_args or None)
    data_args = DataArguments(
        dataset=cfg.data,
        max_train_samples=cfg.train_samples,
        max_eval_samples=cfg.eval_samples,
        overwrite_output_dir=True,
    )
    training = dict(
        output_dir=output_dir,
        method="none",
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=2 * cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,
        lr_scheduler_type="cosine",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        disable_tqdm=True,
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=True,
        seed=cfg.seed,
    )
    return model_args, data_args, DistillationTrainingArguments(**{**training, **cfg.ours_overrides})


def _use_timm_decay_groups() -> None:
    """Probe only: the Trainer decays what timm's optimizer factory decays (no 1-d params, no no_weight_decay())."""
    from hf_cakd import DistillationTrainer
    from hf_cakd.backbones.registry import unwrap_timm

    def names(self, model):
        timm_model = unwrap_timm(model.student)
        skip = set(timm_model.no_weight_decay()) if hasattr(timm_model, "no_weight_decay") else set()
        prefix = next(n for n, m in model.named_modules() if m is timm_model) + "."
        return [n for n, p in model.named_parameters()
                if p.ndim > 1 and not (n.startswith(prefix) and n[len(prefix):] in skip)]  # fmt: skip

    DistillationTrainer.get_decay_parameter_names = names


def run_ours(cfg: ParityConfig) -> dict:
    if cfg.ours_timm_decay_groups:
        _use_timm_decay_groups()
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        results = distill(*ours_arguments(cfg, output_dir))
        seconds = time.perf_counter() - start
    return {"top1": results["metrics"]["student"]["top1"], "train_seconds": results["train_seconds"],
            "total_seconds": round(seconds, 1), "train_loss": results["train_loss"]}  # fmt: skip


# ---- probes: what each side feeds the model, decays, and schedules ----


def probe(cfg: ParityConfig) -> dict:
    from hf_cakd import load_classifier
    from hf_cakd.data import image_transforms, model_input_spec

    ours_model = load_classifier(cfg.student, {i: str(i) for i in range(10)}, model_args=cfg.student_model_args)
    plain_model = build_plain_model(cfg)
    spec = model_input_spec(ours_model)
    plain_train, plain_eval = plain_transforms(32, spec.mean, spec.std)
    test = ParquetImages(os.path.join(cfg.data, "test.parquet"), 8, lambda image: image)
    ours_eval = image_transforms(ours_model, train=False)
    eval_diff = max((ours_eval(test.image(i)) - plain_eval(test.image(i))).abs().max().item() for i in range(8))
    torch.manual_seed(0)
    ours_train = image_transforms(ours_model, train=True)(test.image(0))
    plain_decay = sum(p.numel() for g in create_optimizer_v2(plain_model, "adamw", weight_decay=0.05).param_groups
                      if g["weight_decay"] > 0 for p in g["params"])  # fmt: skip
    hf_decay = set(hf_decay_parameter_names(ours_model))
    ours_decay = sum(p.numel() for n, p in ours_model.named_parameters() if n in hf_decay)
    ours_no_decay = [n for n, p in ours_model.named_parameters() if n not in hf_decay]
    init = {
        name: (round(p.std().item(), 5), round(q.std().item(), 5))
        for (name, p), (_, q) in zip(plain_model.named_parameters(), ours_model.named_parameters())
        if name in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "head.weight")
    }
    return {
        "input_spec": {k: str(v) for k, v in asdict(spec).items()},
        "eval_max_abs_diff_vs_plain": eval_diff,
        "ours_train_tensor_shape": list(ours_train.shape),
        "decayed_params": {"plain_timm": plain_decay, "ours_trainer": ours_decay},
        "ours_not_decayed": ours_no_decay,
        "init_std_plain_vs_ours": init,
    }


def parse(argv: list[str] | None = None) -> tuple[ParityConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ParityConfig()
    for name in ("data", "student", "train_samples", "eval_samples", "epochs", "batch_size",
                 "learning_rate", "weight_decay", "warmup", "seed", "plain_clip_grad"):  # fmt: skip
        parser.add_argument(f"--{name}", type=type(getattr(defaults, name)), default=getattr(defaults, name))
    parser.add_argument("--student_model_args", type=json.loads, default=defaults.student_model_args)
    parser.add_argument(
        "--ours_override", action="append", default=[], help="A training argument of (B), as JSON: max_grad_norm=0."
    )
    for switch in ("ours_timm_decay_groups", "plain_hf_decay_groups", "plain_hf_init"):
        parser.add_argument(f"--{switch}", action="store_true")
    parser.add_argument("--only", choices=("plain", "ours"), help="Run one side only.")
    parser.add_argument("--probe", action="store_true", help="Train nothing; print the cheap probes.")
    parser.add_argument("--out", help="Write the JSON here.")
    options = parser.parse_args(argv)
    cfg = ParityConfig(**{k: v for k, v in vars(options).items() if k in ParityConfig.__dataclass_fields__})
    cfg.ours_overrides = {key: json.loads(value) for key, value in (o.split("=", 1) for o in options.ours_override)}
    return cfg, options


def main(argv: list[str] | None = None) -> dict:
    cfg, options = parse(argv)
    torch.set_num_threads(1)
    report: dict = {"config": asdict(cfg), "torch_threads": torch.get_num_threads()}
    if options.probe:
        report["probe"] = probe(cfg)
    else:
        if options.only != "ours":
            report["plain"] = run_plain(cfg)
            print(f"plain: top-1 {100 * report['plain']['top1']:.2f}%", flush=True)
        if options.only != "plain":
            report["ours"] = run_ours(cfg)
            print(f"ours: top-1 {100 * report['ours']['top1']:.2f}%", flush=True)
        if "plain" in report and "ours" in report:
            report["gap_points"] = round(100 * (report["plain"]["top1"] - report["ours"]["top1"]), 2)
    print(json.dumps(report, indent=2, default=str))
    if options.out:
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


if __name__ == "__main__":
    main()
