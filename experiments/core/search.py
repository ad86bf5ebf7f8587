"""Grid search over hyper-parameters on the validation split: tune on validation, then
report on test once.

A grid over the learning rate alone is trained as one population (all rates at once,
the rate living in the optimizer state); any other grid trains one variant per
combination. Tuning runs go to metrics.jsonl (phase "search:<name>") and to the
report's search table, never to the results table.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence

from experiments.core import claims
from experiments.core.training import Variant, train_variant


def grid_search(session, name: str, make_variant: Callable[[dict], Variant],
                grid: Mapping[str, Sequence], *, seeds: int = 1,
                score: str = "validation_accuracy") -> tuple[dict | None, list]:
    """Tries every combination of `grid`; returns (the best combination, [(combination,
    score), ...]). `make_variant(combination)` builds the variant of one combination."""
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    seed_list = list(range(seeds))

    def train(variant):
        session.expect([variant], seeds=seeds)
        return train_variant(variant, session.config, session.data, bar=session.bar,
                             eval_split="validation", seeds=seed_list)

    if combos and keys == ["lr"]:
        variant = dataclasses.replace(make_variant({}), lr=tuple(c["lr"] for c in combos))
        trained = list(zip(combos, train(variant)))
    else:
        trained = [(combo, train(make_variant(combo))[0]) for combo in combos]
    results = []
    for combo, result in trained:
        results.append((combo, claims.mean(result.scalars.get(score, []))))
        session.log_result(result, f"search:{name}")
    scored = [(c, s) for c, s in results if s is not None]
    best = max(scored, key=lambda cs: cs[1])[0] if scored else None
    session.searches[name] = {"kind": "grid", "score": score, "best": best,
                              "trials": [{"params": c, "score": s} for c, s in results]}
    session.write_summary()
    return best, results
