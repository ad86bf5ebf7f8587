"""A study: its typed settings, its claims, and the procedure that measures them.

    STUDY = Study(name="dead_relu", description="...", config=Config, claims=CLAIMS, run=run)

    def run(session: Session) -> Outcome:
        results = session.train([Variant(...), ...])       # on the engine, every seed
        ...                                              # measurements and plots
        return Outcome(metrics=..., columns=..., facts=..., plots=...)

`main(STUDY)` is the whole command line: it parses the options generated from the
Config (experiments.core.config), loads the data, opens the run folder, calls `run`, judges
each claim on the findings (experiments.core.claims) and prints every claim with the
numbers and a verdict. Results are written as each variant finishes, so Ctrl-C
leaves the finished variants readable. Exit codes: 0 done; 2 bad arguments or
missing data (one line on stderr); 130 interrupted.

Run from the command line on Linux, a study restarts itself once with tcmalloc
preloaded when it is installed (`fcnn.allocator`; XLA's training steps are 1.5-1.9x
faster with it); `FCNN_ALLOCATOR=system` keeps the system allocator.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jax
from tqdm import tqdm

from fcnn import allocator
from fcnn.cli import UsageError

from experiments.core import claims as claims_lib
from experiments.core import config as config_lib
from experiments.core.config import Config, option  # noqa: F401  (what a study module needs)
from experiments.core.report import Column, RunFolder, number, stat
from experiments.core.training import DataStore, Variant, VariantResult, standard_scalars, train_variant

POPULATION_TEXT = {
    "auto": "batched with jax.vmap, except convolutional models on the CPU (one after another)",
    "vmap": "batched with jax.vmap",
    "sequential": "one after another",
}


@dataclass
class Outcome:
    """What a study's `run` returns beyond the trained variants.

    metrics: per variant, per metric, the per-seed values it measured;
    columns: the report table; facts: study facts its claims read (see Findings);
    notes: lines for the report; plots: (path, caption) of the PNGs it drew.
    """

    metrics: Mapping[str, Mapping[str, Sequence]] = field(default_factory=dict)
    columns: Sequence[Column] = ()
    facts: Mapping = field(default_factory=dict)
    notes: Sequence[str] = ()
    plots: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class Study:
    """A study: its name, what it claims, its settings and its procedure.

    `check(config, data)` (optional) raises UsageError for options that do not fit
    the data or each other, before any folder is written.
    """

    name: str
    description: str
    config: type
    claims: tuple[claims_lib.Claim, ...]
    run: Callable[["Session"], Outcome]
    check: Callable | None = None

    def parser(self):
        epilog = "claims tested:\n" + "\n".join(f"  - {c.text}" for c in self.claims)
        return config_lib.build_parser(self.config, f"python -m experiments.{self.name}",
                                       self.description, epilog)


class Session:
    """One execution of a study: trains variants and writes the files as results come in."""

    def __init__(self, study: Study, config):
        self.study, self.config = study, config
        self.data = DataStore(config)
        self.folder: RunFolder | None = None
        self.bar = None
        self.start = time.perf_counter()
        self.status = "running"
        self.results: dict[str, VariantResult] = {}
        self.table: dict[str, dict[str, list]] = {}
        self.searches: dict[str, dict] = {}
        self.variants: list[dict] = []
        self.outcome = Outcome()
        self.verdicts: list[claims_lib.Verdict] = []
        self.command = f"python -m experiments.{study.name}"

    # -- setup ------------------------------------------------------------------

    def check(self) -> None:
        """Loads the data and checks the options against it (before any folder)."""
        n = int(self.data.get().train.labels.shape[0])
        if self.config.batch_size > n:
            raise UsageError(
                f"--batch-size {self.config.batch_size} is larger than the {n} training examples"
                f"{' of --quick' if self.config.quick else ''}; use at most {n}")
        if self.study.check is not None:
            self.study.check(self.config, self.data)

    def open(self) -> None:
        self.folder = RunFolder(self.config.out, self.study.name)
        self._write_config()
        self.bar = tqdm(total=0, desc=self.study.name, unit="step", dynamic_ncols=True,
                        mininterval=0.5, file=sys.stderr, leave=False)

    def _write_config(self) -> None:
        self.folder.write_json("config.json", {
            "study": self.study.name, "description": self.study.description,
            "settings": self.config.as_dict(), "dataset": self.data.describe(),
            "variants": self.variants, "started": datetime.datetime.now().isoformat(),
            "population": self.config.population,
            "environment": {
                "python": platform.python_version(), "jax": jax.__version__,
                "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                "cpu_count": os.cpu_count(), "platform": platform.platform(),
            },
        })

    def path(self, name: str) -> str:
        return self.folder.path(name)

    # -- training ---------------------------------------------------------------

    def expect(self, variants: Sequence[Variant], seeds: int | None = None) -> None:
        """Adds the variants' training steps (times members) to the progress bar."""
        seeds = self.config.seeds if seeds is None else seeds
        for v in variants:
            n = self.data.get(v.normalize).train.labels.shape[0]
            n = n if v.train_size is None else min(v.train_size, n)
            steps = (n // (v.batch_size or self.config.batch_size)) * (v.epochs or self.config.epochs)
            self.bar.total += steps * seeds * len(v.learning_rates(self.config.lr))
        self.bar.refresh()

    def train(self, variants: Sequence[Variant], *, targets: Sequence[float] = (),
              phase: str = "main") -> dict[str, VariantResult]:
        """Trains each variant (all seeds), writing its results as soon as it is done.

        `targets`: smoothed training errors whose first step is recorded per seed
        ("steps_to_<pct>").
        """
        self.expect(variants)
        self.variants += [dict(v.describe(self.config), seeds=self.config.seeds) for v in variants]
        self._write_config()
        out = {}
        for variant in variants:
            for result in train_variant(variant, self.config, self.data, bar=self.bar):
                result.scalars.update(standard_scalars(result, targets=targets))
                self.results[result.name] = result
                self.table[result.name] = dict(result.scalars)
                self.log_result(result, phase)
                out[result.name] = result
            self.write_summary()
        return out

    def log_result(self, result: VariantResult, phase: str) -> None:
        """Appends a result's step, epoch, probe and summary rows to metrics.jsonl."""
        rows = []
        for s, seed in enumerate(result.seeds):
            head = {"phase": phase, "variant": result.name, "seed": seed, "lr": result.lr}
            for t in range(result.total_steps):
                rows.append(dict(head, kind="step", step=t + 1, epoch=t // result.steps_per_epoch + 1,
                                 time=float(result.step_time[s, t]),
                                 **{k: float(a[s, t]) for k, a in result.step.items()}))
            for e in range(result.epoch["time"].shape[1]):
                rows.append(dict(head, kind="epoch", epoch=e, step=e * result.steps_per_epoch,
                                 **{k: float(a[s, e]) for k, a in result.epoch.items()}))
            for p, step in enumerate(result.probe_steps):
                rows.append(dict(head, kind="probe", step=int(step),
                                 **{k: float(a[s, p]) for k, a in result.probes.items()}))
            rows.append(dict(head, kind="summary", **{k: v[s] for k, v in result.scalars.items()}))
        self.folder.append_metrics(rows)

    # -- output -----------------------------------------------------------------

    def findings(self) -> claims_lib.Findings:
        return claims_lib.Findings(self.table, self.config.seeds, self.outcome.facts)

    def summary(self) -> dict:
        return {
            "study": self.study.name, "status": self.status, "dataset": self.data.describe(),
            "command": self.command, "settings": self.config.as_dict(),
            "wall_time": time.perf_counter() - self.start,
            "variants": {name: {metric: stat(values) for metric, values in row.items()}
                         for name, row in self.table.items()},
            "searches": self.searches,
            "claims": [v.as_dict() for v in self.verdicts],
            "plots": [p for p, _ in self.outcome.plots],
        }

    def write_summary(self) -> None:
        self.folder.write_json("summary.json", self.summary())
        c, ds = self.config, self.data.describe()
        header = (
            f"Dataset **{ds['name']}** (train {ds['train']}, validation {ds['validation']}, test "
            f"{ds['test']}; images {'x'.join(map(str, ds['image_shape']))}); {c.seeds} seed(s); "
            f"{c.epochs} epoch(s), batch {c.batch_size}, lr {c.lr:g} unless the variant says "
            f"otherwise; seeds trained {POPULATION_TEXT[c.population]}"
            f"{'; --quick' if c.quick else ''}. Status: {self.status}; wall time "
            f"{time.perf_counter() - self.start:.1f} s.")
        self.folder.write_report(
            title=self.study.name, description=self.study.description, header=header,
            notes=self.outcome.notes, table=self.table, columns=self.outcome.columns,
            searches=self.searches, verdicts=self.verdicts, plots=self.outcome.plots)

    def finish(self, outcome: Outcome) -> None:
        """Merges the study's measurements, judges the claims, writes the final files."""
        self.outcome = outcome
        extra_rows = []
        for name, row in outcome.metrics.items():
            values = {k: [None if v is None else number(v) for v in vs] for k, vs in row.items()}
            self.table.setdefault(name, {}).update(values)
            seeds = self.results[name].seeds if name in self.results else range(len(next(iter(values.values()), [])))
            extra_rows += [{"phase": "main", "variant": name, "seed": seed, "kind": "study",
                            **{k: vs[s] for k, vs in values.items()}} for s, seed in enumerate(seeds)]
        self.folder.append_metrics(extra_rows)
        self.verdicts = [claim.judge(self.findings()) for claim in self.study.claims]
        self.status = "complete"
        self.write_summary()
        self.close()

    def interrupt(self) -> None:
        self.status = "interrupted"
        if self.folder is not None:
            self.write_summary()
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def print_claims(self, file=None) -> None:
        file = file or sys.stdout
        print(f"{self.study.name} on {self.config.dataset}: {len(self.table)} variant(s) x "
              f"{self.config.seeds} seed(s) in {time.perf_counter() - self.start:.1f} s; results in "
              f"{self.folder.dir}", file=file)
        for v in self.verdicts:
            print(v.line(), file=file)
        counts = claims_lib.statuses(self.verdicts)
        print("claims: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=file)


def fail(prog: str, message) -> int:
    """Prints the one-line error and returns exit code 2."""
    sys.stderr.write(f"{prog}: error: {' '.join(str(message).split())}\n")
    return 2


def main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Parses the command line, runs the study, prints its claims; returns the exit code.

    0: done; 2: bad arguments or missing data (one line on stderr); 130: interrupted
    (the finished variants' results stay in the run folder).
    """
    from fcnn.data import DataFormatError

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is handled below now
    parser = study.parser()
    args = parser.parse_args(argv)
    try:
        if argv is None:  # a real command line: restart once with tcmalloc or mimalloc
            allocator.use_fast_allocator()
        session = Session(study, config_lib.resolve(study.config, args))
        session.command = " ".join([session.command, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
        session.check()
        session.open()
    except (UsageError, DataFormatError, FileNotFoundError, ValueError) as err:
        return fail(parser.prog, err)
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted before training started\n")
        return 130
    try:
        outcome = study.run(session)
    except KeyboardInterrupt:
        session.interrupt()
        sys.stderr.write(f"\n{parser.prog}: interrupted; {len(session.table)} finished variant(s) "
                         f"are in {session.folder.dir}\n")
        return 130
    session.finish(outcome)
    session.print_claims()
    return 0


__all__ = ["Config", "Outcome", "Session", "Study", "fail", "main", "option"]
