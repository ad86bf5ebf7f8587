"""The studies: one script per claim of the notes, all on one runner.

    python -m experiments.<study> --help

Each study trains its variants with several seeds (batched with jax.vmap), writes
runs/<study>/<timestamp>/ (config.json, metrics.jsonl, summary.json, report.md, PNG
plots) and prints each claim it tests with the measured numbers and a verdict.
"""

STUDIES = (
    "compare_activations",
    "vanishing_gradients",
    "dead_relu",
    "dropout",
    "batchnorm",
    "group_vs_batch_norm",
    "initialization",
    "lr_schedules",
    "batch_size",
    "loss_slowdown",
    "pooling",
    "input_normalization",
    "center_loss",
)
