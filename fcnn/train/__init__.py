"""Training: one engine (`train_steps`, a compiled step run over batches and per-step
keys) under `fit`, population (vmap) training and the studies; the jitted steps,
evaluation, optimizers and regularizers, fine-tuning, checkpoints, per-example
gradients and data parallelism; and inference: `predict`, `evaluate` and
`load_for_inference`."""

from fcnn.train.checkpoint import (  # noqa: F401
    CheckpointError,
    best_checkpoint,
    find_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_for_inference,
    mark_best,
    model_fingerprint,
    remove_partial,
    save_checkpoint,
)
from fcnn.train.finetune import (  # noqa: F401
    MODES,
    combine,
    count_trainable,
    last_layer_path,
    partition,
    trainable_mask,
)
from fcnn.train.engine import StepResult, step_keys, train_steps  # noqa: F401
from fcnn.train.evaluation import (  # noqa: F401
    check_labels,
    eval_batches,
    evaluate,
    evaluate_batches,
    evaluate_step,
)
from fcnn.train.inference import predict  # noqa: F401
from fcnn.train import callbacks  # noqa: F401
from fcnn.train.callbacks import EarlyStopping, KeepBest, ReduceOnPlateau  # noqa: F401
from fcnn.train.loop import FitInterrupted, FitResult, NonFiniteError, fit  # noqa: F401
from fcnn.train.optimizers import OPTIMIZERS, by_name, make_optimizer  # noqa: F401
from fcnn.train.regularizers import (  # noqa: F401
    add_l1,
    add_l2,
    decoupled_weight_decay,
    kernel_mask,
    max_norm,
    project_max_norm,
    unit_norms,
)
from fcnn.train.step import (  # noqa: F401
    check_batch_fits,
    describe_nonfinite,
    init_opt_state,
    make_eval_step,
    make_train_step,
    supervised_objective,
)
