"""hf_cakd: cross-architecture knowledge distillation (FBT, Fuse Before Transfer) for vision models."""

__version__ = "0.1.0"
