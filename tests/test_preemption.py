"""PreemptionCallback: a signal stops training after the current step, with a checkpoint, on every rank at once."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import TrainerControl, TrainerState

from hf_cakd.training.preemption import PreemptionCallback

WORLD_SIZE = 2


def step_end(callback: PreemptionCallback, step: int) -> TrainerControl:
    control = TrainerControl()
    callback.on_step_end(SimpleNamespace(device=torch.device("cpu")), TrainerState(global_step=step), control)
    return control


def test_a_signal_asks_for_a_save_and_a_stop_at_the_end_of_the_step():
    callback = PreemptionCallback()
    args = SimpleNamespace(device=torch.device("cpu"))
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    try:
        assert not step_end(callback, 1).should_training_stop
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the process carries on to the end of the step
        control = step_end(callback, 2)
        assert control.should_save and control.should_training_stop and callback.stopped_at_step == 2
    finally:
        callback.on_train_end(args, TrainerState(), TrainerControl())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back


def test_a_run_that_raises_puts_the_previous_handlers_back(tmp_path):
    from test_trainer import make_trainer

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    trainer = make_trainer(tmp_path, method="kd", max_steps=2)
    trainer.compute_loss = lambda *args, **kwargs: 1 / 0  # fails inside the first step, after on_train_begin
    with pytest.raises(ZeroDivisionError):
        trainer.train()
    assert {signum: signal.getsignal(signum) for signum in before} == before


def _rank(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    callback = PreemptionCallback()
    stops = []
    for step in (1, 2, 3):
        if rank == 1 and step == 2:
            callback.received = signal.SIGTERM  # only rank 1 got the signal, before step 2 ended
        stops.append(step_end(callback, step).should_training_stop)
        if stops[-1]:
            break  # as the Trainer does
    torch.save({"stops": stops, "stopped_at": callback.stopped_at_step}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_every_rank_stops_at_the_same_step_when_one_got_the_signal(tmp_path):
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    assert [r["stopped_at"] for r in ranks] == [2, 2]
    assert [r["stops"] for r in ranks] == [[False, True], [False, True]]
