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
from transformers import BitImageProcessor, ConvNextImageProcessor, ViTImageProcessor

from hf_cakd.data import image_transforms, model_input_spec
from test_device_views import in_pixels, photos


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
