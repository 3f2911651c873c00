"""hf_cakd's evaluation transform against the libraries' own: timm's ``create_transform`` for a timm model's data
config, and the transformers image processor itself, on the demo photos (docs/architecture.md, "Resize and crop
rules: timm's and the processors', pinned")."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from transformers import (
    BeitImageProcessor,
    BitImageProcessor,
    ConvNextImageProcessor,
    DeiTImageProcessor,
    EfficientNetImageProcessor,
    MobileNetV2ImageProcessor,
    ViTImageProcessor,
)

from hf_cakd.data import image_transforms, model_input_spec
from hf_cakd.run.pipeline import _saved_processor
from test_device_views import cifar_images, in_pixels, photos


@pytest.mark.parametrize("name", ["resnet18.a1_in1k", "deit_tiny_patch16_224.fb_in1k", "convnext_atto.d2_in1k"])
def test_a_timm_models_eval_view_is_timms_own_transform(name):
    model = timm.create_model(name, pretrained=False, num_classes=10)  # the data config, no weights
    ours, timms = image_transforms(model, train=False), create_transform(**resolve_model_data_config(model))
    for photo in photos():
        torch.testing.assert_close(ours(photo), timms(photo), atol=1e-5, rtol=0)


PROCESSORS = {
    "vit (warp)": ViTImageProcessor(),
    "convnext (crop_pct)": ConvNextImageProcessor(),
    "convnext 384 (warp)": ConvNextImageProcessor(size={"shortest_edge": 384}),
    "bit (shorter side, crop)": BitImageProcessor(),
    "deit (warp 256, crop 224)": DeiTImageProcessor(),
    "beit (released: warp 224, no crop)": BeitImageProcessor(do_center_crop=False),
    "mobilenet_v2 (shorter side 256, crop 224)": MobileNetV2ImageProcessor(),
    "vit do_normalize=False": ViTImageProcessor(do_normalize=False),
    "vit rescale_factor 1/127.5": ViTImageProcessor(rescale_factor=1 / 127.5, image_mean=[1, 1, 1], image_std=[1, 1, 1]),
    "efficientnet (include_top: std twice)": EfficientNetImageProcessor(size={"height": 224, "width": 224}),
    "efficientnet rescale_offset": EfficientNetImageProcessor(
        size={"height": 224, "width": 224}, rescale_offset=True, rescale_factor=1 / 127.5, include_top=False
    ),
}


@pytest.mark.parametrize("name", PROCESSORS)
def test_a_transformers_models_eval_view_is_its_processors_output_but_for_a_centre_crop_rounding(name):
    """The processor resizes floats (no 8-bit rounding or clipping), PIL in 8 bits: the views differ by that rounding.
    Where the centre crop's margin is odd, torchvision (and timm) round its offset and transformers floors it: our
    view, timm's, is then one pixel off the processor's, which a crop at the floored offset reproduces."""
    processor = PROCESSORS[name]
    spec = model_input_spec(None, processor)
    ours = image_transforms(None, processor, train=False)
    for photo in photos():
        theirs = processor(photo, return_tensors="pt")["pixel_values"][0]
        resized = v2.Resize(spec.resize, interpolation=spec.interpolation)(photo)
        margins = (resized.height - spec.size[0], resized.width - spec.size[1])
        view = ours(photo)
        if any(margin % 2 for margin in margins):
            view = TF.crop(resized, margins[0] // 2, margins[1] // 2, *spec.size)
            view = TF.normalize(TF.to_dtype(TF.to_image(view), torch.float32, scale=True), spec.mean, spec.std)
        assert view.shape == theirs.shape == (3, *spec.size)
        difference = (in_pixels(view, spec) - in_pixels(theirs, spec)).abs() * 255
        assert difference.mean() < 0.5 and (difference > 1.0).float().mean() < 0.01, (difference.mean(), difference.max())


@pytest.mark.parametrize("name", PROCESSORS)
def test_the_saved_processor_reproduces_the_eval_view_of_tiny_images(name):
    """On tiny images (CIFAR) the eval view stretches to the model's size without a crop: the processor saved
    beside the student must do the same, for ``pipeline("image-classification", model=output_dir)``."""
    processor = PROCESSORS[name]
    spec = model_input_spec(None, processor)
    saved = _saved_processor(None, processor, None, small_images=True)
    ours = image_transforms(None, processor, train=False)
    for image in cifar_images():
        view, theirs = ours(image), saved(image, return_tensors="pt")["pixel_values"][0]
        assert view.shape == theirs.shape == (3, *spec.size)
        difference = (in_pixels(view, spec) - in_pixels(theirs, spec)).abs() * 255
        assert difference.mean() < 0.5 and (difference > 1.0).float().mean() < 0.01, (difference.mean(), difference.max())


@pytest.mark.parametrize("name", PROCESSORS)
def test_the_saved_processor_at_a_tiny_student_image_size_crops_photos_as_evaluation_does(name):
    """``--student_image_size 32`` on photos: the eval view resizes and centre-crops them, so must the saved processor."""
    processor = PROCESSORS[name]
    saved = _saved_processor(None, processor, 32, small_images=False)
    assert saved.do_center_crop and model_input_spec(None, saved) == model_input_spec(None, processor, image_size=32)
