import math
import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_cakd.backbones import StageInfo
from hf_cakd.losses import (
    FeatureProjector,
    FitNetLoss,
    LearnableTemperature,
    info_nce,
    kd_loss,
    ofa_loss,
    smoothed_dim,
    spatial_smooth,
)

B, NUM_CLASSES = 4, 5


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(B, NUM_CLASSES, generator=generator) * 3
    teacher = torch.randn(B, NUM_CLASSES, generator=generator) * 3
    labels = torch.tensor([0, 2, 4, 1])
    return student, teacher, labels


def softmax_by_hand(x):
    e = x.exp()
    return e / e.sum(dim=-1, keepdim=True)


# ---- KD -----------------------------------------------------------------------------------------


def test_kd_matches_textbook_formula(logits):
    student, teacher, _ = logits
    t = 4.0
    p_t, p_s = softmax_by_hand(teacher / t), softmax_by_hand(student / t)
    expected = (p_t * (p_t.log() - p_s.log())).sum() / B * t**2
    assert torch.allclose(kd_loss(student, teacher, temperature=t), expected, atol=1e-6)
    assert kd_loss(teacher, teacher).abs() < 1e-6


# ---- OFA ----------------------------------------------------------------------------------------


def test_ofa_gamma_one_is_soft_target_cross_entropy(logits):
    student, teacher, labels = logits
    expected = -(softmax_by_hand(teacher) * softmax_by_hand(student).log()).sum(dim=-1).mean()
    assert torch.allclose(ofa_loss(student, teacher, labels, gamma=1.0), expected, atol=1e-6)


def test_ofa_gamma_two_matches_explicit_loop(logits):
    student, teacher, labels = logits
    t, gamma = 2.0, 2.0
    p_t, p_s = softmax_by_hand(teacher / t), softmax_by_hand(student / t)
    total = 0.0
    for i in range(B):
        for c in range(NUM_CLASSES):
            y = 1.0 if c == labels[i] else 0.0
            total -= ((p_t[i, c].item() + y) ** gamma - y) * math.log(p_s[i, c].item())
    loss = ofa_loss(student, teacher, labels, gamma=gamma, temperature=t)
    assert loss.item() == pytest.approx(total / B, rel=1e-5)
    # Class indices and one-hot targets are the same labels.
    one_hot = torch.nn.functional.one_hot(labels, NUM_CLASSES)
    assert torch.allclose(ofa_loss(student, teacher, one_hot, gamma=gamma, temperature=t), loss)


def test_ofa_rejects_gamma_below_one(logits):
    with pytest.raises(ValueError, match="gamma >= 1"):
        ofa_loss(*logits, gamma=0.5)


# ---- InfoNCE ------------------------------------------------------------------------------------


def info_nce_by_hand(z_x, z_y, tau):
    z_x = z_x / z_x.norm(dim=-1, keepdim=True)
    z_y = z_y / z_y.norm(dim=-1, keepdim=True)
    sim = torch.zeros(len(z_x), len(z_y))
    for i in range(len(z_x)):
        for j in range(len(z_y)):
            sim[i, j] = (z_x[i] * z_y[j]).sum() / tau
    x_to_y = -torch.stack([sim[i].softmax(-1)[i].log() for i in range(len(sim))]).mean()
    y_to_x = -torch.stack([sim[:, i].softmax(-1)[i].log() for i in range(len(sim))]).mean()
    return (x_to_y + y_to_x) / 2


def test_info_nce_matches_hand_computation():
    z_x, z_y = torch.randn(6, 8), torch.randn(6, 8)
    assert torch.allclose(info_nce(z_x, z_y, 0.1), info_nce_by_hand(z_x, z_y, 0.1), atol=1e-5)
    # Aligned views beat shuffled ones.
    assert info_nce(z_x, 2 * z_x, 0.1) < info_nce(z_x, z_x.flip(0), 0.1)


def info_nce_masked_by_hand(z_x, z_y, tau, labels):
    """Each direction's cross-entropy over the positive and the other-class images only."""
    z_x = z_x / z_x.norm(dim=-1, keepdim=True)
    z_y = z_y / z_y.norm(dim=-1, keepdim=True)
    total = 0.0
    for a, b in ((z_x, z_y), (z_y, z_x)):
        for i in range(len(a)):
            kept = [j for j in range(len(b)) if j == i or labels[j] != labels[i]]
            sims = torch.stack([(a[i] * b[j]).sum() / tau for j in kept])
            total -= sims.softmax(-1)[kept.index(i)].log().item()
    return total / (2 * len(z_x))


def test_info_nce_same_label_mask_matches_hand_computation():
    z_x, z_y = torch.randn(6, 8), torch.randn(6, 8)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    masked = info_nce(z_x, z_y, 0.1, labels=labels)
    assert masked.item() == pytest.approx(info_nce_masked_by_hand(z_x, z_y, 0.1, labels), rel=1e-5)
    assert masked < info_nce(z_x, z_y, 0.1)  # fewer negatives, lower loss
    # Distinct labels mask nothing; soft labels are read by their argmax.
    distinct = torch.arange(6)
    assert torch.allclose(info_nce(z_x, z_y, 0.1, labels=distinct), info_nce(z_x, z_y, 0.1))
    soft = torch.nn.functional.one_hot(labels, 3).float() * 0.8 + 0.2 / 3
    assert torch.allclose(info_nce(z_x, z_y, 0.1, labels=soft), masked)
    # One class only: every image is left with its positive alone, the loss is 0, gradients finite.
    z_x.requires_grad_(True)
    single = info_nce(z_x, z_y, 0.1, labels=torch.zeros(6, dtype=torch.long))
    single.backward()
    assert single.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(z_x.grad).all()


def test_info_nce_batch_of_one_is_zero_and_finite():
    z_x, z_y = torch.randn(1, 8, requires_grad=True), torch.randn(1, 8)
    loss = info_nce(z_x, z_y, LearnableTemperature()())
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z_x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_in_half_precision_are_float32_and_close(logits, dtype):
    student, teacher, labels = logits
    z_x, z_y = torch.randn(B, 8), torch.randn(B, 8)
    full = [kd_loss(student, teacher), ofa_loss(student, teacher, labels, gamma=2.0), info_nce(z_x, z_y, 0.01)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = [
            kd_loss(student.to(dtype), teacher.to(dtype)),
            ofa_loss(student.to(dtype), teacher.to(dtype), labels, gamma=2.0),
            info_nce(z_x.to(dtype), z_y.to(dtype), torch.tensor(0.01, dtype=dtype)),
        ]
    for f, h in zip(full, half):
        assert h.dtype == torch.float32 and torch.isfinite(h)
        assert h.item() == pytest.approx(f.item(), rel=0.05, abs=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 inputs stay float32 inside
        assert torch.allclose(info_nce(z_x, z_y, 0.01), full[2], atol=1e-6)


def test_temperature_is_clamped_and_learns_only_inside_the_range():
    tau = LearnableTemperature(init=0.07, min=0.01, max=1.0)
    assert tau().item() == pytest.approx(0.07)
    tau().backward()
    assert tau.log_tau.grad.item() == pytest.approx(0.07)  # d exp(s) / ds inside the range
    for log_value, bound in ((math.log(1e-4), 0.01), (math.log(5.0), 1.0)):
        tau.log_tau.grad = None
        with torch.no_grad():
            tau.log_tau.fill_(log_value)
        value = tau()
        assert value.item() == pytest.approx(bound)
        value.backward()
        assert tau.log_tau.grad.item() == 0.0
    with pytest.raises(ValueError):
        LearnableTemperature(init=2.0, max=1.0)


# ---- spatial smoothing and projector ------------------------------------------------------------


def map_and_tokens(channels=3, grid=(2, 3), prefix=1):
    feature_map = torch.randn(2, channels, *grid)
    spatial = feature_map.flatten(2).transpose(1, 2)
    cls = torch.full((2, prefix, channels), 100.0)  # would dominate any pooling that kept it
    tokens = torch.cat([cls, spatial], dim=1)
    return (
        feature_map,
        StageInfo("map", channels, grid),
        tokens,
        StageInfo("tokens", channels, grid, num_prefix_tokens=prefix),
    )


@pytest.mark.parametrize("pooling", ["avg", 1, 2])
def test_smoothing_maps_and_tokens_agree(pooling):
    feature_map, map_info, tokens, token_info = map_and_tokens()
    from_map = spatial_smooth(feature_map, map_info, pooling)
    assert torch.allclose(from_map, spatial_smooth(tokens, token_info, pooling), atol=1e-6)
    assert from_map.shape == (2, smoothed_dim(map_info, pooling))
    if pooling == "avg":
        assert torch.allclose(from_map, feature_map.mean(dim=(2, 3)))


def test_smoothing_k_by_k_and_cls():
    feature_map, map_info, tokens, token_info = map_and_tokens(channels=4, grid=(4, 4))
    pooled = spatial_smooth(feature_map, map_info, pooling=2)
    assert pooled.shape == (2, 4 * 2 * 2) == (2, smoothed_dim(map_info, 2))
    assert torch.allclose(pooled[:, 0], feature_map[:, 0, :2, :2].mean(dim=(1, 2)))  # channel-major
    assert torch.equal(spatial_smooth(tokens, token_info, use_cls=True), tokens[:, 0])
    with pytest.raises(ValueError, match="class token"):
        spatial_smooth(feature_map, map_info, use_cls=True)
    with pytest.raises(ValueError, match="pooling"):
        spatial_smooth(feature_map, map_info, pooling="max")


def test_projector_maps_to_shared_dim():
    projector = FeatureProjector(12)
    assert projector(torch.randn(3, 12)).shape == (3, 256)
    assert FeatureProjector(12, out_dim=16, hidden_dim=7).net[0].out_features == 7


# ---- FitNet -------------------------------------------------------------------------------------


def test_fitnet_is_zero_for_identity_projector_and_equal_maps():
    feature_map, map_info, tokens, token_info = map_and_tokens(channels=3, grid=(2, 3))
    fitnet = FitNetLoss(map_info, token_info)
    with torch.no_grad():
        fitnet.projector.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        fitnet.projector.bias.zero_()
    assert fitnet(feature_map, tokens).item() == pytest.approx(0.0, abs=1e-12)


def test_fitnet_resizes_across_grids_and_trains_only_the_student_side():
    student_info = StageInfo("map", 8, (7, 7))
    teacher_info = StageInfo("tokens", 6, (14, 14), num_prefix_tokens=1)
    fitnet = FitNetLoss(student_info, teacher_info)
    student = torch.randn(2, 8, 7, 7, requires_grad=True)
    teacher = torch.randn(2, 1 + 14 * 14, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fitnet(student, teacher)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert fitnet.projector.weight.grad.abs().sum() > 0
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None


# ---- InfoNCE across processes -------------------------------------------------------------------

WORLD_SIZE, LOCAL_BATCH, DIM, TAU = 2, 3, 8, 0.1


def global_embeddings():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, WORLD_SIZE * LOCAL_BATCH, DIM, generator=generator)


def _gather_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    z_x, z_y = (z[rows].clone().requires_grad_(True) for z in global_embeddings())
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated collective: a warning per process and save
        loss = info_nce(z_x, z_y, TAU)
        loss.backward()
    local_only = info_nce(z_x.detach(), z_y.detach(), TAU, gather_across_processes=False)
    torch.save({"loss": loss.detach(), "grad_x": z_x.grad, "grad_y": z_y.grad, "local": local_only},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


GLOBAL_LABELS = torch.tensor([0, 1, 0, 1, 2, 0])  # same-class pairs within and across the two processes


def _masked_gather_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    z_x, z_y = (z[rows].clone().requires_grad_(True) for z in global_embeddings())
    loss = info_nce(z_x, z_y, TAU, labels=GLOBAL_LABELS[rows])
    loss.backward()
    torch.save({"loss": loss.detach(), "grad_x": z_x.grad}, os.path.join(out_dir, f"masked{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_info_nce_same_label_mask_across_processes(tmp_path):
    mp.spawn(_masked_gather_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    results = [torch.load(tmp_path / f"masked{rank}.pt") for rank in range(WORLD_SIZE)]
    z_x, z_y = (z.clone().requires_grad_(True) for z in global_embeddings())
    expected = info_nce(z_x, z_y, TAU, labels=GLOBAL_LABELS)
    expected.backward()
    assert expected.item() == pytest.approx(info_nce_masked_by_hand(*global_embeddings(), TAU, GLOBAL_LABELS), rel=1e-5)
    assert torch.allclose(torch.stack([r["loss"] for r in results]).mean(), expected, atol=1e-6)
    grad_x = torch.cat([r["grad_x"] for r in results]) / WORLD_SIZE
    assert torch.allclose(grad_x, z_x.grad, atol=1e-6)


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_info_nce_gathers_negatives_across_processes(tmp_path):
    mp.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]

    z_x, z_y = (z.clone().requires_grad_(True) for z in global_embeddings())
    expected = info_nce(z_x, z_y, TAU)
    expected.backward()
    # The mean of the per-process losses is the loss of the whole batch ...
    assert torch.allclose(torch.stack([r["loss"] for r in results]).mean(), expected, atol=1e-6)
    # ... and gradients, once averaged over processes as DDP does, are the whole batch's.
    grad_x = torch.cat([r["grad_x"] for r in results]) / WORLD_SIZE
    grad_y = torch.cat([r["grad_y"] for r in results]) / WORLD_SIZE
    assert grad_x.abs().sum() > 0
    assert torch.allclose(grad_x, z_x.grad, atol=1e-6) and torch.allclose(grad_y, z_y.grad, atol=1e-6)
    # Without gathering each process only sees its own negatives.
    local = info_nce(global_embeddings()[0][:LOCAL_BATCH], global_embeddings()[1][:LOCAL_BATCH], TAU)
    assert torch.allclose(results[0]["local"], local, atol=1e-6)
