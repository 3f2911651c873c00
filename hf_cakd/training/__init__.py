"""The training layer: ``DistillationTrainer``, its arguments, checkpoints, pre-emption, metrics and the EMA (docs/architecture.md, "Layers")."""
