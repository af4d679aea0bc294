"""Where a search trial's time goes, and trials per hour at the default proxy settings.

Run: python -m bench.search_trial [--budget-mflops 200] [--candidates 3]

Splits a trial into sampling + screening (Optuna's TPE proposing a candidate, building its NetSpec
and counting it), training (the proxy epochs) and evaluation (held-out validation after each epoch,
as the search does for pruning), for a few feasible candidates sampled at the budget, trained with
exactly the settings `e3d search` uses by default.
"""

from __future__ import annotations

import argparse
import time
import warnings
from statistics import mean

import optuna
import torch

from bench import machine_stamp
from e3d.cli import Parser, guarded, positive_float, positive_int
from search.budget import Budget, screen
from search.data.proxy import class_names
from search.searchspace import FAMILIES, sample_params, spec_from_params
from search.study import ProxyConfig, load_proxy
from search.train import TrainConfig, evaluate, fit
from space.modules import build
from space.spec import E3DError, NetSpec

MAX_DRAWS = 300
"""Candidates drawn at most: a budget that fewer than ``--candidates`` of them meet is refused in one line."""


class NoCandidatesError(E3DError):
    """Too few sampled candidates fit the budget."""


def main(argv: list[str] | None = None) -> int:
    """Print the split and the rate; 2 on bad input (a budget too few candidates meet is refused before training)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-mflops", type=positive_float, default=200.0)
    p.add_argument("--candidates", type=positive_int, default=3, help="feasible candidates to train")
    p.add_argument("--epochs", type=positive_int, default=ProxyConfig.epochs, help="proxy epochs (default: the search's)")
    p.add_argument("--train-samples", type=positive_int, default=ProxyConfig.train_samples, help="training videos (default: the search's)")
    p.add_argument("--val-samples", type=positive_int, default=ProxyConfig.val_samples, help="validation videos (default: the search's)")
    args = p.parse_args(argv)
    return guarded(lambda: measure(args))


def sample_feasible(budget: Budget, count: int, *, num_classes: int, clip: tuple[int, int, int]) -> tuple[list[NetSpec], list[float]]:
    """``count`` candidates that meet ``budget`` (at ``clip``), and the seconds of sampling + screening each of at least
    50 draws; :class:`NoCandidatesError` when :data:`MAX_DRAWS` draws do not give ``count``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate and group: as the search samples
        sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    screen_times: list[float] = []
    feasible: list[NetSpec] = []
    while len(feasible) < count or len(screen_times) < 50:
        if len(screen_times) >= MAX_DRAWS:
            raise NoCandidatesError(
                f"only {len(feasible)} of {MAX_DRAWS} sampled candidates meet {budget.describe()}, "
                f"fewer than --candidates {count}: raise --budget-mflops or lower --candidates"
            )
        t = time.perf_counter()
        trial = study.ask()
        params = sample_params(trial, FAMILIES)
        spec = spec_from_params(params, num_classes=num_classes)
        verdict = screen(spec, budget)
        screen_times.append(time.perf_counter() - t)
        study.tell(trial, 1.0 if verdict.feasible else 0.0)
        if verdict.feasible and len(feasible) < count:
            feasible.append(spec.replace(clip=clip))
    return feasible, screen_times


def measure(args: argparse.Namespace) -> int:
    """Sample the candidates, train them and print the split."""
    proxy = ProxyConfig(epochs=args.epochs, train_samples=args.train_samples, val_samples=args.val_samples)
    budget = Budget(mflops=args.budget_mflops)
    # sampled before the data are loaded (the built-in task's classes are known), so that a budget too tight is refused at once
    feasible, screen_times = sample_feasible(budget, args.candidates, num_classes=len(class_names(proxy.task)), clip=proxy.clip)
    print(f"# {machine_stamp(threads=torch.get_num_threads())}")
    print(f"# proxy: {proxy.describe()}; budget: {budget.describe()}\n")

    t0 = time.perf_counter()
    data = load_proxy(proxy, progress=False)
    setup = time.perf_counter() - t0
    assert data.num_classes == feasible[0].num_classes, (data.num_classes, feasible[0].num_classes)

    rows = []
    for spec in feasible:
        config = TrainConfig(epochs=proxy.epochs, batch_size=proxy.batch_size, lr=proxy.lr, seed=0)
        model = build(spec)
        t = time.perf_counter()
        fit(model, data.train, data.val, config, progress=False)
        total = time.perf_counter() - t
        t = time.perf_counter()
        evaluate(model, data.val, batch_size=2 * proxy.batch_size)
        one_eval = time.perf_counter() - t
        rows.append((spec.summary(), total - proxy.epochs * one_eval, proxy.epochs * one_eval))

    sample = mean(screen_times)
    print(f"data setup (once per worker): {setup:.1f} s")
    print(f"sampling + screening: {sample * 1e3:.2f} ms per candidate (TPE over {len(screen_times)} trials)\n")
    print(f"{'candidate':<70}{'train s':>9}{'eval s':>8}{'share train':>13}")
    for summary, train, ev in rows:
        print(f"{summary[:68]:<70}{train:9.1f}{ev:8.1f}{100 * train / (train + ev + sample):12.1f}%")
    per_trial = sample + mean(r[1] + r[2] for r in rows)
    print(f"\nmean trained trial: {per_trial:.1f} s -> {3600 / per_trial:.0f} trained trials per hour on this machine")
    print("(rejected candidates cost only the screening time above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
