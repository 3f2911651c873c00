"""RSD: its loss against a hand computation, its invariances, across processes; the method and fbt's RSD option."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_cakd.losses import RSDProjector, redundancy_suppression_loss
from hf_cakd.methods import method_class, method_config
from hf_cakd.backbones import staged_view
from tiny_models import IMAGE_SIZE, build


def features(batch=6, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=generator), torch.randn(batch, dim, generator=generator)


def rsd_by_hand(student, teacher, kappa):
    batch, dim = len(student), len(student[0])

    def standardised(x, i, k):
        column = [x[b][k] for b in range(batch)]
        mean = sum(column) / batch
        std = (sum((v - mean) ** 2 for v in column) / batch) ** 0.5
        return (x[i][k] - mean) / (std + 1e-5)

    total = 0.0
    for i in range(dim):
        for j in range(dim):
            c = sum(standardised(teacher, b, i) * standardised(student, b, j) for b in range(batch)) / batch
            total += (c - 1) ** 2 if i == j else kappa * c**2
    return total


def test_rsd_loss_matches_hand_computation():
    student, teacher = features()
    expected = rsd_by_hand(student.tolist(), teacher.tolist(), 0.01)
    assert redundancy_suppression_loss(student, teacher, kappa=0.01).item() == pytest.approx(expected, rel=1e-5)
    # kappa weighs only the off-diagonal part
    on_diagonal = rsd_by_hand(student.tolist(), teacher.tolist(), 0.0)
    assert redundancy_suppression_loss(student, teacher, kappa=0.0).item() == pytest.approx(on_diagonal, rel=1e-5)
    assert on_diagonal < expected


def test_rsd_loss_is_invariant_to_a_per_dimension_affine_change_of_either_side():
    student, teacher = features(batch=16)
    loss = redundancy_suppression_loss(student, teacher)
    scale, shift = torch.tensor([0.1, 3.0, 7.0, 0.5]), torch.tensor([-4.0, 2.0, 0.0, 100.0])
    assert redundancy_suppression_loss(student * scale + shift, teacher).item() == pytest.approx(loss.item(), rel=1e-3)
    assert redundancy_suppression_loss(student, teacher * scale + shift).item() == pytest.approx(loss.item(), rel=1e-3)


def test_rsd_loss_falls_as_the_student_approaches_the_teacher():
    student, teacher = features(batch=64, dim=8)
    mixes = [(1 - a) * student + a * teacher for a in (0, 0.25, 0.5, 0.75, 1)]
    values = [redundancy_suppression_loss(mix, teacher).item() for mix in mixes]
    assert values == sorted(values, reverse=True)
    # At the teacher itself only the teacher's own redundancy is left: its dimensions' correlations, times kappa.
    assert redundancy_suppression_loss(teacher, teacher, kappa=0.0).item() == pytest.approx(0.0, abs=1e-3)
    assert values[-1] == pytest.approx(0.01 * rsd_by_hand(teacher.tolist(), teacher.tolist(), 1.0), rel=1e-3)


def test_rsd_loss_is_float32_and_needs_equal_shapes():
    student, teacher = features()
    assert redundancy_suppression_loss(student.bfloat16(), teacher.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"must both be \(B, d\), got \(6, 4\) and \(6, 3\)"):
        redundancy_suppression_loss(student, teacher[:, :3])


def test_rsd_projector_has_the_papers_layers():
    projector = RSDProjector(8, 5, expansion=2)
    first, norm, _, last = projector.net
    assert (first.in_features, first.out_features, first.bias) == (8, 16, None)
    assert norm.num_features == 16 and (last.in_features, last.out_features, last.bias) == (16, 5, None)
    assert projector(torch.randn(3, 8)).shape == (3, 5)


def view(name, seed=0):
    return staged_view(build(name, seed=seed), IMAGE_SIZE)


def _method(name, student, teacher, **options):
    return method_class(name)(student, teacher, method_config(name, options))


def test_rsd_method_trains_the_projector_and_the_student_against_pre_logits():
    student, teacher = view("hf-resnet"), view("hf-vit")
    method = _method("rsd", student, teacher)
    assert method.projector.net[0].in_features == student.pre_logits_dim()
    assert method.projector.net[-1].out_features == teacher.pre_logits_dim()
    pixels, labels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        teacher_output = teacher(pixels)
    losses = method(student(pixels), teacher_output, labels)
    assert set(losses) == {"ce", "rsd"}
    sum(losses.values()).backward()
    assert method.projector.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_rsd_with_a_logit_term_and_on_stage4():
    student, teacher = view("hf-resnet"), view("hf-vit")
    method = _method("rsd", student, teacher, rsd_logit_loss="ofa", rsd_feature="stage4")
    assert method.projector.net[0].in_features == student.stage_infos[3].channels
    pixels, labels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor([0, 1, 2, 0])
    losses = method(student(pixels), teacher(pixels), labels)
    assert set(losses) == {"ce", "rsd", "ofa"}


def test_rsd_term_of_a_batch_of_one_is_zero():
    student, teacher = view("hf-resnet"), view("hf-vit")
    method = _method("rsd", student, teacher).train()
    pixels, labels = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor([0])
    assert method(student(pixels), teacher(pixels), labels)["rsd"].item() == 0.0


@pytest.mark.parametrize("options, message", [
    ({"rsd_kappa": -1}, "rsd_kappa weighs a sum of squares"),
    ({"rsd_projector_expansion": 0}, "rsd_projector_expansion is a positive integer"),
    ({"rsd_weight": -0.1}, "rsd_weight is a loss weight"),
])  # fmt: skip
def test_rsd_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        method_config("rsd", options)


def test_fbt_with_rsd_feature_loss_replaces_infonce_on_each_path():
    student, teacher = view("hf-vit"), view("hf-resnet")
    method = _method("fbt", student, teacher, fbt_feature_loss="rsd")
    assert not method.projectors and not method.temperatures
    paths = {f"{x}_{y}" for x, y in method.config.transfer_pairs}
    assert set(method.rsd_projectors) == paths
    pixels, labels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor([0, 1, 2, 0])
    losses = method(student(pixels), teacher(pixels), labels)
    assert {name for name in losses if name.startswith(("rsd_", "infonce_"))} == {f"rsd_{p}" for p in paths}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in method.rsd_projectors.parameters())


# ---- across processes ---------------------------------------------------------------------------

WORLD_SIZE, LOCAL_BATCH = 2, 4


def _rsd_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    student, teacher = features(batch=WORLD_SIZE * LOCAL_BATCH)
    student = student[rows].clone().requires_grad_(True)
    loss = redundancy_suppression_loss(student, teacher[rows])
    loss.backward()
    local = redundancy_suppression_loss(student.detach(), teacher[rows], gather_across_processes=False)
    torch.save({"loss": loss.detach(), "grad": student.grad, "local": local}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow  # several processes: a minute on a 2-core CPU
def test_rsd_uses_the_global_batch_across_processes(tmp_path):
    mp.spawn(_rsd_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    student, teacher = features(batch=WORLD_SIZE * LOCAL_BATCH)
    student.requires_grad_(True)
    expected = redundancy_suppression_loss(student, teacher)
    expected.backward()
    # Every process computes the loss of the whole batch ...
    assert all(torch.allclose(r["loss"], expected, atol=1e-5) for r in results)
    # ... its own half alone would give another value ...
    assert not torch.allclose(results[0]["local"], expected, atol=1e-2)
    # ... and the gradients, averaged over processes as DDP does, are the whole batch's.
    grad = torch.cat([r["grad"] for r in results]) / WORLD_SIZE
    assert torch.allclose(grad, student.grad, atol=1e-5)
