"""hf_cakd's ``kd`` and ``feature_kd`` compute the losses of timm's own distillation tasks.

timm.task's LogitDistillationTask and FeatureDistillationTask are what a timm user would use; the
benchmark's rows for them are these two methods, so their losses must equal timm's on the same
models, inputs and weights.
"""

import torch
from timm.task import FeatureDistillationTask, LogitDistillationTask

from hf_cakd import staged_view
from hf_cakd.methods import method_class, method_config
from tiny_models import IMAGE_SIZE, NUM_LABELS, TIMM_TINY_VIT, timm_classifier, timm_resnet


def _models_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    # A ViT 48 wide under a ResNet 32 wide: feature KD needs its projection, as timm would build it.
    student = timm_classifier("vit_tiny_patch16_224", NUM_LABELS, **dict(TIMM_TINY_VIT, embed_dim=48))
    teacher = timm_resnet()
    student.eval(), teacher.eval()  # no dropout, fixed norm statistics: both sides see the same forward
    pixels = torch.randn(6, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.randint(0, NUM_LABELS, (6,))
    return student, teacher, pixels, labels


def _method_terms(name: str, student, teacher, pixels, labels, **options):
    student_view, teacher_view = staged_view(student, IMAGE_SIZE), staged_view(teacher, IMAGE_SIZE)
    method = method_class(name)(student_view, teacher_view, method_config(name, options))
    with torch.no_grad():
        teacher_output = teacher_view(pixels)
    return method, method(student_view(pixels), teacher_output, labels)


def test_kd_is_timm_logit_distillation_task():
    student, teacher, pixels, labels = _models_and_batch()
    _, terms = _method_terms("kd", student, teacher, pixels, labels, kd_temperature=4.0)
    task = LogitDistillationTask(
        student.timm_model, teacher.timm_model, temperature=4.0, distill_loss_weight=1.0, task_loss_weight=1.0,
        verbose=False,
    )
    expected = task(pixels, labels)
    assert torch.allclose(terms["ce"], expected["task_loss"], atol=1e-5)
    assert torch.allclose(terms["kd"], expected["kd_loss"], atol=1e-5)
    assert terms["kd"] > 0


def test_feature_kd_is_timm_feature_distillation_task():
    student, teacher, pixels, labels = _models_and_batch(seed=1)
    method, terms = _method_terms("feature_kd", student, teacher, pixels, labels)
    task = FeatureDistillationTask(
        student.timm_model, teacher.timm_model, distill_loss_weight=5.0, task_loss_weight=1.0, verbose=False
    )
    task.trainable_module.projection.load_state_dict(method.projection.state_dict())
    expected = task(pixels, labels)
    assert method.config.feature_kd_weight == 5.0  # timm's documented weight is the default
    assert torch.allclose(terms["ce"], expected["task_loss"], atol=1e-5)
    assert torch.allclose(terms["feature"], 5.0 * expected["kd_loss"], atol=1e-5)
    assert terms["feature"] > 0


def test_feature_kd_trains_the_projection_and_the_student():
    student, teacher, pixels, labels = _models_and_batch(seed=2)
    method, terms = _method_terms("feature_kd", student, teacher, pixels, labels)
    terms["feature"].backward()
    assert method.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
