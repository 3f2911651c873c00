"""One run, the pipeline layer: ``hf_cakd.distill``, its plan, the defaults it fills in, the model card and the push (docs/architecture.md, "Layers")."""
