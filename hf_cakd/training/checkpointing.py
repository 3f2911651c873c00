"""A DistillationTrainer's checkpoint I/O: every part saved once, complete checkpoints, resume checks, a full disk.

:class:`CheckpointIO` is what the trainer's ``save_model`` and its overrides of the Trainer's two private load
methods delegate to, and the callback that completes each checkpoint (docs/architecture.md, "What the trainer
overrides").
A checkpoint holds the student as a plain transformers model at the top, the method's parts once,
``distillation_config.json``, the Trainer's own files, and ``checkpoint_complete``, written last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedModel, TrainerCallback, TrainerState
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import TrainOutput, rotate_checkpoints
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME

from .ema import EMA_DIR
from ..errors import InputError
from ..methods.base import BY_PAIR, option_text
from ..methods.renamed import REMOVED_HELP, saved_options_renamed
from ..modeling_distillation import DISTILLATION_CONFIG_NAME
from ..safe_loading import torch_file_problem

logger = logging.getLogger(__name__)

# Written last into a checkpoint: a checkpoint without it was interrupted while being written.
CHECKPOINT_COMPLETE_NAME = "checkpoint_complete"
CHECKPOINT_PREFIX = "checkpoint-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# The Trainer's pickles a resume loads (Trainer._load_rng_state, _load_optimizer_and_scheduler, _load_scaler), and
# whether it allows numpy types in them. Nothing reads training_args.bin.
TRAINER_PICKLES = {"rng_state*.pth": True, OPTIMIZER_NAME: False, SCHEDULER_NAME: False, SCALER_NAME: False}


class DiskFullError(InputError):
    """A save ran out of disk space (or quota); the checkpoints written before it are untouched."""


def complete_checkpoints(output_dir: str) -> list[str]:
    """The ``checkpoint-N`` folders in ``output_dir`` whose write finished, the one that finished last first.

    Ordered by completion time, not by step: after ``--overwrite_output_dir`` the folder may still hold
    an earlier run's checkpoints of higher steps (as ``rotate_checkpoints(use_mtime=True)`` orders them).
    """
    if not os.path.isdir(output_dir):
        return []
    completed = {}
    for name in os.listdir(output_dir):
        marker = os.path.join(output_dir, name, CHECKPOINT_COMPLETE_NAME)
        if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX) :].isdigit() and os.path.isfile(marker):
            completed[name] = (os.path.getmtime(marker), int(name[len(CHECKPOINT_PREFIX) :]))
    return [os.path.join(output_dir, name) for name in sorted(completed, key=completed.get, reverse=True)]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The ``checkpoint-N`` in ``output_dir`` whose write finished last (:func:`complete_checkpoints`), or None."""
    return next(iter(complete_checkpoints(output_dir)), None)


@contextlib.contextmanager
def writing_into(output_dir: str, main_process: bool = True):
    """Hold ``output_dir`` for one run: a second run into it stops at once instead of replacing this one's files.

    The lock is the folder's own (``flock`` on the directory, released when the run ends or its process dies), so
    nothing is added to the folder; a file system without ``flock`` is not locked. Only the main process locks.
    """
    if not main_process:
        yield
        return
    os.makedirs(output_dir, exist_ok=True)
    folder = os.open(output_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"Another run is writing into {output_dir}: wait for it to end, or pass another --output_dir."
            ) from None
        except OSError:  # no flock on this file system (some network mounts)
            pass
        yield
    finally:
        os.close(folder)  # releases the lock


def resume_point(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint a ``train(resume_from_checkpoint=...)`` resumes from: only one whose write completed and whose
    files a resume reads load safely (:func:`check_readable`).

    ``True`` takes the newest complete checkpoint in ``output_dir``, passing over one a killed
    process left half-written; an explicit incomplete checkpoint is refused.
    """
    if resume_from_checkpoint is True:
        last = last_complete_checkpoint(output_dir)
        if last is None and not (os.path.isdir(output_dir) and os.listdir(output_dir)):
            # A job's first run: the same command (a scheduler's requeue) resumes once a checkpoint exists.
            logger.info("No checkpoint in %s yet: training starts afresh.", output_dir)
            return None
        if last is None:
            raise InputError(
                f"No complete checkpoint in {output_dir} to resume from: drop --resume_from_checkpoint to start afresh."
            )
        check_readable(last)
        return last
    if resume_from_checkpoint and not os.path.isfile(os.path.join(resume_from_checkpoint, CHECKPOINT_COMPLETE_NAME)):
        newest = last_complete_checkpoint(os.path.dirname(os.path.abspath(resume_from_checkpoint)))
        raise InputError(
            f"{resume_from_checkpoint} is not a complete checkpoint (missing, or its write was interrupted). "
            + (f"The newest complete one is {newest}." if newest else "No complete checkpoint is beside it.")
        )
    if resume_from_checkpoint:
        check_readable(resume_from_checkpoint)
    return resume_from_checkpoint or None


def _file_problem(path: Path) -> str | None:
    """Why a file of a checkpoint that a resume reads cannot be read safely, or None (also for a file nothing reads)."""
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):  # UnicodeDecodeError is a ValueError
            return "is not valid JSON"
    elif path.suffix == ".safetensors":
        try:
            with safe_open(path, framework="pt"):  # checks the header and that the file holds every tensor it lists
                pass
        except (SafetensorError, OSError):
            return "is not a readable safetensors file: it is truncated, corrupt, or in another format"
    else:
        allow_numpy = next((numpy for name, numpy in TRAINER_PICKLES.items() if fnmatch.fnmatch(path.name, name)), None)
        if allow_numpy is not None:
            return torch_file_problem(str(path), allow_numpy)
    return None


def check_readable(checkpoint_dir: str) -> None:
    """Refuse a checkpoint one of whose files cannot be read safely: JSON, safetensors and the Trainer's pickles
    (loaded with torch's safe loader, memory-mapped, as a resume loads them), naming the file and the way on."""
    for path in sorted(Path(checkpoint_dir).rglob("*")):
        problem = _file_problem(path) if path.is_file() else None
        if problem is None:
            continue
        parent = os.path.dirname(os.path.abspath(checkpoint_dir))
        earlier = [c for c in complete_checkpoints(parent) if not os.path.samefile(c, checkpoint_dir)]
        way_on = (
            f"Resume from an earlier complete checkpoint (--resume_from_checkpoint {earlier[0]}) or start afresh"
            if earlier
            else "No earlier complete checkpoint is beside it: start afresh"
        )
        raise InputError(
            f"Cannot resume from {checkpoint_dir}: {path} {problem}, so hf_cakd does not load it. {way_on} with "
            "another --output_dir."
        )


def finished_run(checkpoint_dir: str | None, max_steps: int) -> tuple[TrainerState, TrainOutput] | None:
    """The state of ``checkpoint_dir`` and the run's outcome when it already took ``max_steps`` (> 0) steps, else None.

    ``Trainer.train`` resuming from such a checkpoint would take one step more (transformers 5.25), changing the
    student of a run that had finished (one killed during its final evaluation, say): an upstream workaround, with a
    canary that says when to remove it (docs/architecture.md, "Upstream workarounds"). The training loss is the mean
    of the losses it logged.
    """
    state_file = os.path.join(checkpoint_dir, TRAINER_STATE_NAME) if checkpoint_dir else None
    if max_steps <= 0 or state_file is None or not os.path.isfile(state_file):
        return None
    state = TrainerState.load_from_json(state_file)
    if state.global_step < max_steps:
        return None
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    loss = sum(losses) / len(losses) if losses else float("nan")
    return state, TrainOutput(state.global_step, loss, {"train_loss": loss})


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _folder_bytes(folder: str) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def _free_bytes(path: str) -> int:
    """Free space on the disk ``path`` is (or would be) on."""
    absolute = Path(path).absolute()
    return shutil.disk_usage(next(p for p in (absolute, *absolute.parents) if p.exists())).free


def _saved_student_state(student: PreTrainedModel, checkpoint_dir: str) -> dict[str, torch.Tensor]:
    """The state dict of the student saved in ``checkpoint_dir``, under the live model's parameter names.

    ``save_pretrained`` writes weights in the checkpoint layout transformers publishes, which for
    some models (ViT in transformers 5) differs from the modules' own names, so the file cannot go
    to ``load_state_dict`` as it is. ``from_pretrained`` applies the model's conversion mapping.
    """
    saved, info = type(student).from_pretrained(checkpoint_dir, output_loading_info=True)
    problems = {key: sorted(map(str, info[key])) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        raise InputError(
            f"The student saved in {checkpoint_dir} does not match the model being trained: {problems}. Resume with "
            "the same --student, or pass another --output_dir to start a new run."
        )
    return saved.state_dict()


def _identity(entry):
    """What makes a model the same model for a resume (the spec, its architecture and resolution)."""
    if not isinstance(entry, dict):
        return entry
    return {key: entry.get(key) for key in ("name_or_path", "architecture", "image_size")}


def _brief(entry) -> str:
    if not isinstance(entry, dict):
        return repr(entry)
    return f"{entry.get('name_or_path') or '(built from a config)'} [{entry.get('architecture')}, {entry.get('image_size')}]"


def check_same_run(checkpoint_dir: str, current: dict) -> None:
    """Refuse to resume a checkpoint written by another method, teacher or student, naming both sides.

    ``current`` is this run's ``DistillationModel.description()``; changed method options are logged. Options an
    earlier version wrote under their old names are read under their new ones (hf_cakd.methods.renamed); one since
    removed, set to a behaviour that no longer exists, refuses the resume.
    """
    saved_file = os.path.join(checkpoint_dir, DISTILLATION_CONFIG_NAME)
    if not os.path.isfile(saved_file):
        return
    with open(saved_file) as f:
        saved = json.load(f)
    differences = [
        f"{key}: checkpoint {_brief(saved.get(key))}, this run {_brief(current[key])}"
        for key in ("method", "teacher", "student")
        if _identity(saved.get(key)) != _identity(current[key])
    ]
    if differences:
        raise InputError(
            f"{checkpoint_dir} was written by another run ({'; '.join(differences)}). Resume with the same "
            "--method, --teacher and --student, or pass another --output_dir to start a new run."
        )
    saved_options, removed = saved_options_renamed(current["method"], saved.get("method_config", {}))
    if removed:
        settings = ", ".join(f"--{name} {option_text(value)}" for name, value in removed.items())
        raise InputError(
            f"{checkpoint_dir} was written with {settings}, an option that {REMOVED_HELP}: no version resumes it; "
            "pass another --output_dir to start a new run."
        )
    changed = [
        f"{name} (checkpoint {saved_options[name]!r}, this run {value!r})"
        for name, value in sorted(current["method_config"].items())
        if saved_options.get(name, value) not in (value, BY_PAIR)  # 'auto' then: resolved for the same pair now
    ]
    if changed:
        logger.warning(
            "Resuming %s with changed method options: %s. Pass the checkpoint's values to resume the run as it was "
            "written (an option whose default follows the pair, 'auto', may resolve otherwise in another version).",
            checkpoint_dir,
            "; ".join(changed),
        )


def check_same_classes(checkpoint_dir: str, id2label: dict[int, str]) -> None:
    """Refuse to resume a checkpoint whose student classifies other classes than this run's data has."""
    saved_file = os.path.join(checkpoint_dir, CONFIG_NAME)
    if not os.path.isfile(saved_file):
        return
    with open(saved_file) as f:
        saved = {int(i): name for i, name in json.load(f).get("id2label", {}).items()}
    if saved and saved != dict(id2label):
        raise InputError(
            f"{checkpoint_dir} was written for {len(saved)} classes ({_first_names(saved)}), and this run's data has "
            f"{len(id2label)} ({_first_names(id2label)}). Resume with the same --dataset and "
            "--label_column, or pass another --output_dir to start a new run."
        )


def _first_names(id2label: dict, shown: int = 5) -> str:
    names = [str(id2label[i]) for i in sorted(id2label)]
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


class CheckpointIO(TrainerCallback):
    """Saving and loading one :class:`~hf_cakd.DistillationTrainer`'s ``DistillationModel``, and (as its callback)
    completing each checkpoint the Trainer writes.

    ``trainer`` gives the model (unwrapped through its accelerator), the arguments, the processing
    class and the optimizer (whose state sizes a checkpoint before the first one exists).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.writing: str | None = None  # the checkpoint the Trainer is writing, from save_model to on_save
        self._holding_save_total_limit, self._save_total_limit = False, None

    @property
    def args(self):
        return self.trainer.args

    def _distillation_model(self):
        return self.trainer.accelerator.unwrap_model(self.trainer.model)

    def save(self, output_dir: str, state_dict: dict | None = None) -> None:
        """The student as a plain model, the method's parts once, the run's description, processor and arguments.

        ``state_dict`` is the whole model's, as the Trainer gathers it under FSDP/DeepSpeed.
        """
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        distillation_model = self._distillation_model()
        state_dict = distillation_model.state_dict() if state_dict is None else state_dict
        parts = {"student": {}, "method": {}}
        for key, value in state_dict.items():
            owner, name = key.split(".", 1)
            parts[owner][name] = value
        distillation_model.student.save_pretrained(output_dir, state_dict=parts["student"])
        distillation_model.method.save_parts(output_dir, parts["method"])
        with open(os.path.join(output_dir, DISTILLATION_CONFIG_NAME), "w") as f:
            json.dump(distillation_model.description(), f, indent=2)
        if self.trainer.processing_class is not None:
            self.trainer.processing_class.save_pretrained(output_dir)
        if self.trainer.ema is not None:
            self.trainer.ema.module.save_pretrained(os.path.join(output_dir, EMA_DIR))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def restore_finished_run(self, checkpoint_dir: str | None) -> TrainOutput | None:
        """Load ``checkpoint_dir`` and return its run's outcome when it already reached ``--max_steps``; else None."""
        finished = finished_run(checkpoint_dir, self.args.max_steps)
        if finished is None:
            return None
        logger.info("%s reached --max_steps %d: loaded, nothing left to train.", checkpoint_dir, self.args.max_steps)
        self.load(checkpoint_dir, resuming=True)
        self.trainer.state, result = finished
        return result

    def load(self, checkpoint_dir: str, resuming: bool = False) -> None:
        """Load the student and the method's parts; ``resuming`` first checks the checkpoint is this run's."""
        distillation_model = self._distillation_model()
        if resuming:
            check_same_run(checkpoint_dir, distillation_model.description())
            check_same_classes(checkpoint_dir, distillation_model.student.config.id2label)
        if not os.path.isfile(os.path.join(checkpoint_dir, SAFE_WEIGHTS_NAME)):
            raise InputError(
                f"{checkpoint_dir} has no {SAFE_WEIGHTS_NAME}: it is not a complete DistillationTrainer checkpoint. "
                "Resume from another checkpoint-* directory or start afresh."
            )
        distillation_model.student.load_state_dict(_saved_student_state(distillation_model.student, checkpoint_dir))
        distillation_model.method.load_parts(checkpoint_dir)
        if self.trainer.ema is not None:
            self._load_ema(checkpoint_dir)
        if resuming:  # the skipped-image count goes on from the checkpoint's (one process holds it: totals sum them)
            self.trainer.skipped.resume(checkpoint_dir, self.trainer.accelerator.is_main_process)

    def _load_ema(self, checkpoint_dir: str) -> None:
        ema_dir = os.path.join(checkpoint_dir, EMA_DIR)
        if not os.path.isfile(os.path.join(ema_dir, SAFE_WEIGHTS_NAME)):
            raise InputError(
                f"{checkpoint_dir} has no {EMA_DIR}/ (it was written without --model_ema_decay): resume without "
                "--model_ema_decay, or pass another --output_dir to start a new run with it."
            )
        self.trainer.ema.module.load_state_dict(_saved_student_state(self.trainer.ema.module, ema_dir))

    def begin_checkpoint(self, checkpoint_dir: str) -> None:
        """The Trainer starts writing ``checkpoint_dir`` (its ``save_model``): incomplete until :meth:`on_save`.

        The Trainer rotates old checkpoints away (``save_total_limit``) at the end of its write, before
        ``on_save``; a process killed between the two would leave no complete checkpoint, so the limit is
        held back until the marker is written.
        """
        self.writing = checkpoint_dir
        marker_path = os.path.join(checkpoint_dir, CHECKPOINT_COMPLETE_NAME)
        if self.args.should_save and os.path.isfile(marker_path):
            os.remove(marker_path)  # a checkpoint written again is incomplete until marked again
        if not self._holding_save_total_limit:
            self._save_total_limit, self.args.save_total_limit = self.args.save_total_limit, None
            self._holding_save_total_limit = True

    def _release_save_total_limit(self) -> int | None:
        if self._holding_save_total_limit:
            self.args.save_total_limit, self._holding_save_total_limit = self._save_total_limit, False
        return self.args.save_total_limit

    def on_save(self, args, state, control, **kwargs):
        """Mark the checkpoint complete once every process has written it, then rotate the old ones."""
        if self.writing is None:
            return
        checkpoint_dir, self.writing = self.writing, None
        skipped = self.trainer.skipped.totals(self.trainer.accelerator)  # every process: summed over them
        with self.reporting_a_full_disk(checkpoint_dir, partial=True):
            if args.should_save:
                self.trainer.skipped.save(checkpoint_dir, skipped)
            self.trainer.accelerator.wait_for_everyone()  # the marker says every rank has finished writing
            if args.should_save:
                with open(os.path.join(checkpoint_dir, CHECKPOINT_COMPLETE_NAME), "w") as marker:
                    marker.write(f"step {state.global_step}\n")
        save_total_limit = self._release_save_total_limit()
        if args.should_save:
            rotate_checkpoints(
                output_dir=os.path.dirname(checkpoint_dir),
                save_total_limit=save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint,
                use_mtime=True,
            )

    @contextlib.contextmanager
    def completing_checkpoints(self):
        """Around ``Trainer.train``: a save that fails between ``save_model`` and ``on_save`` (a callback never sees
        it) on a full disk removes the half-written checkpoint (:meth:`reporting_a_full_disk`)."""
        try:
            yield
        except BaseException:
            writing, self.writing = self.writing, None
            if writing is None:
                raise
            with self.reporting_a_full_disk(writing, partial=True):
                raise
        finally:
            self._release_save_total_limit()

    def _checkpoint_bytes(self) -> tuple[int, str]:
        """What a checkpoint takes: the newest complete one's size, else the model's and optimizer's tensors."""
        last = last_complete_checkpoint(self.args.output_dir)
        if last is not None:
            return _folder_bytes(last), f"the size of {os.path.basename(last)}"
        tensors = [*self.trainer.model.state_dict().values()]
        optimizer = self.trainer.optimizer
        if optimizer is not None:
            tensors += [value for state in optimizer.state.values() for value in state.values()]
        size = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
        return size, "the model's and optimizer's tensors"

    @contextlib.contextmanager
    def reporting_a_full_disk(self, target: str, partial: bool = False):
        """Turn a write to ``target`` that failed on a full disk (or quota) into a :class:`DiskFullError`.

        ``partial``: ``target`` is a folder this write creates (a checkpoint), removed when it fails so
        (never resumed from, it only holds space). The message names ``target``, the space left, what
        a checkpoint takes, and the checkpoint that a resume continues from.
        """
        try:
            yield
        except (OSError, RuntimeError, SafetensorError) as err:
            needed, basis = self._checkpoint_bytes()
            # torch.save and safetensors report a failed write as RuntimeError / SafetensorError without an
            # errno: a disk with less space left than a checkpoint takes is what made it fail.
            if not (isinstance(err, OSError) and err.errno in _DISK_FULL) and _free_bytes(target) >= needed:
                raise
            if partial:
                shutil.rmtree(target, ignore_errors=True)
            last = last_complete_checkpoint(self.args.output_dir)
            resume = (
                f"continue from {last}, the last complete checkpoint, which is untouched"
                if last
                else "continue (no checkpoint was complete yet: training starts over)"
            )
            raise DiskFullError(
                f"No space left on the disk of {target}: {_megabytes(_free_bytes(target))} free, and a checkpoint "
                f"takes about {_megabytes(needed)} ({basis}). Free space there (or lower --save_total_limit), then "
                f"run the same command with --resume_from_checkpoint last to {resume}."
            ) from err
