"""Which adapter builds the staged view of a model.

Adapters register the classes they understand, the way timm registers architectures::

    @register_adapter(MyNetForImageClassification)
    def staged_mynet(model, image_size=None) -> StagedBackbone: ...

Lookup walks the model's class hierarchy, so a subclass (timm's ``VisionTransformerDistilled``)
uses its parent's adapter unless it registers its own. A transformers
``TimmWrapperForImageClassification`` is looked up by the timm model it wraps.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .base import StagedBackbone, UnsupportedArchitectureError, as_pair

AdapterFn = Callable[[nn.Module, "tuple[int, int] | None"], StagedBackbone]
_ADAPTERS: dict[type, AdapterFn] = {}


def register_adapter(*model_classes: type) -> Callable[[AdapterFn], AdapterFn]:
    """Decorate ``adapter(model, image_size=None) -> StagedBackbone`` as the staged view of ``model_classes``
    (and their subclasses): ``@register_adapter(MyNetForImageClassification)``."""
    if not model_classes or not all(isinstance(cls, type) for cls in model_classes):
        raise TypeError(
            "register_adapter takes the model classes the adapter handles, as in "
            f"@register_adapter(MyNetForImageClassification); got {model_classes!r}."
        )

    def decorator(adapter: AdapterFn) -> AdapterFn:
        for model_class in model_classes:
            _ADAPTERS[model_class] = adapter
        return adapter

    return decorator


def unwrap_timm(model: nn.Module) -> nn.Module:
    """The timm model inside a transformers ``TimmWrapper*`` model, or the model itself."""
    return getattr(model, "timm_model", model)


def supported_architectures() -> list[str]:
    return sorted(f"{cls.__module__.split('.')[0]}:{cls.__name__}" for cls in _ADAPTERS)


def find_adapter(model: nn.Module) -> AdapterFn:
    target = unwrap_timm(model)
    for cls in type(target).__mro__:
        if cls in _ADAPTERS:
            return _ADAPTERS[cls]
    raise UnsupportedArchitectureError(
        f"hf_cakd has no staged view for {type(target).__name__} "
        f"({type(model).__module__}). Supported: {', '.join(supported_architectures())}. "
        "To add one, write a function that returns a StagedBackbone(stem, 4 stages, head) for "
        "your model and decorate it with @hf_cakd.backbones.register_adapter(YourModelClass)."
    )


def staged_view(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> StagedBackbone:
    """The :class:`StagedBackbone` of a transformers or timm image classifier.

    ``image_size`` is the input resolution the stage infos (grids) describe; it defaults to the
    model's configured resolution. Models with a fixed token grid (ViT, Swin, Mixer) reject a
    resolution they cannot run at.
    """
    return find_adapter(model)(model, None if image_size is None else as_pair(image_size))
