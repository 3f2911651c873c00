"""Teachers trained once and kept in the repository, so that every benchmark run and every fresh clone reuses
them instead of training them again.

    .venv/bin/python -m benchmarks.accuracy.teachers vit-p16-64 --data ../shared/datasets/cifar10

trains a teacher of ``TEACHERS`` alone (``--method none``) through ``scripts/distill.py``, stage by stage
(each a schedule starting from the weights the one before saved), into ``--work_dir`` (default
``outputs/teachers/<name>``)``/stage-<i>``, saving a checkpoint every epoch: the same command run again skips
the finished stages and resumes the stopped one from its last complete checkpoint. When training ends, the
files a teacher needs (its config, weights, image processor, ``results.json`` and card) of the last stage
are copied into ``benchmarks/accuracy/teachers/<name>/``, which is committed; ``command.txt`` there records
the call.
"""
