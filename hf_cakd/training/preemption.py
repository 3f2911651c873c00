"""Pre-emption: SIGTERM (how SLURM, Kubernetes and spot instances stop a job) or SIGINT ends a run cleanly.

The signal only raises a flag; the step in flight finishes, a complete checkpoint is written
(with its completion marker), and training stops. :class:`~hf_cakd.DistillationTrainer` then
raises :class:`~hf_cakd.errors.Preempted` (exit code 75 from the CLI); the same command with
``--resume_from_checkpoint last`` continues. Under several processes the flag is agreed on by an
all-reduce after every step, so every rank stops, and saves, at the same step even when the
signal reaches them at different moments.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

import torch
import torch.distributed as dist
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionCallback(TrainerCallback):
    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received: int | None = None
        self.stopped_at_step: int | None = None
        self._previous_handlers: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # a second signal: the user insists, stop now
            self._restore()
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("Received %s: finishing this step, then saving a checkpoint.", signal.Signals(signum).name)

    def _restore(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    @contextlib.contextmanager
    def restoring_handlers(self):
        """Put the previous handlers back when the block ends, also when training raised before ``on_train_end``."""
        try:
            yield
        finally:
            self._restore()

    def on_train_begin(self, args, state, control, **kwargs):
        self.received = self.stopped_at_step = None
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous_handlers = {signum: signal.signal(signum, self._handle) for signum in self.signals}

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed_stop(args.device):
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()

    def _agreed_stop(self, device) -> bool:
        requested = self.received is not None
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return requested
        flag = torch.tensor(int(requested), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
