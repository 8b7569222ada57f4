"""CartPole-v1: course_lib's PPO, TRPO and REINFORCE against Stable-Baselines3 PPO and sb3-contrib TRPO.

What it measures (see benchmarks/README.md for the full description and the latest numbers):
every method is trained for ``--max-steps`` env steps on ``--seeds`` seeds and evaluated at the
first training iteration whose env-step count reaches each multiple of 5,000 (greedy actions, mean
return of 10 episodes, evaluation env seeds 10000..10009 for every method). For each method it
prints the median and range over seeds of the env steps and of the *training* wall seconds
(evaluation time subtracted) until the mean return first reaches 475, and until it reaches 475 for
good (every later evaluation up to the end of the run is ≥ 475), plus ours/theirs ratios.

Our side runs the reference trainers with their default configs (only the total env-step budget
is set to ``--max-steps``). The peers run with their tuned rl-baselines3-zoo CartPole-v1
hyperparameters (hyperparams/ppo.yml and hyperparams/trpo.yml). Both sides use one torch thread
on the CPU, in the same process, one run at a time, seeds interleaved so background load hits
both sides alike.

Usage::

    pip install -e ".[bench]"
    python benchmarks/cartpole_peers.py [--seeds 10] [--max-steps 100000] \
        [--only ours|sb3|all] [--methods ppo,trpo,reinforce]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import NamedTuple

import torch
from torch import nn

from course_lib.rl import envs as course_envs

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0
EVAL_EVERY = 5_000
EVAL_EPISODES = 10
EVAL_SEED = 10_000  # evaluation episodes use env seeds 10000..10009, for every method

# rl-baselines3-zoo hyperparams/ppo.yml and hyperparams/trpo.yml, "CartPole-v1" (tuned).
ZOO_PPO = dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
               ent_coef=0.0, learning_rate="lin_1e-3", clip_range="lin_0.2")
ZOO_TRPO = dict(n_envs=2, n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98,
                gamma=0.99, learning_rate=1e-3, n_critic_updates=20)
# Targets for our side (from the issue). Steps are medians over seeds; wall ratios are ours/theirs.
TARGETS = {"ppo": dict(first=15_000, good=25_000, wall_ratio=0.5, peer="sb3_ppo"),
           "trpo": dict(first=25_000, good=60_000, wall_ratio=0.5, peer="sb3_trpo")}
REINFORCE_MIN_SOLVED_FRACTION = 0.8  # of the seeds
# Names a config's total-env-step budget might have; the first one present is set to --max-steps.
BUDGET_FIELDS = ("total_env_steps", "total_steps", "total_timesteps", "env_steps", "num_env_steps")


class Eval(NamedTuple):
    """One evaluation. ``mark`` is the multiple of EVAL_EVERY it stands for; ``steps`` is the env-step
    count of the training iteration where it ran (the first one with steps ≥ mark, so up to one
    iteration later); ``wall`` is the training wall time so far, evaluation time excluded."""

    mark: int
    steps: int
    wall: float
    mean_return: float


@dataclasses.dataclass
class Run:
    """One training run and its evaluations."""

    method: str
    seed: int
    evals: list[Eval] = dataclasses.field(default_factory=list)
    train_wall: float = 0.0  # whole run, evaluation excluded
    eval_wall: float = 0.0
    final_steps: int = 0

    def first(self) -> Eval | None:
        """The first evaluation with mean return ≥ threshold."""
        return next((e for e in self.evals if e.mean_return >= THRESHOLD), None)

    def for_good(self) -> Eval | None:
        """The evaluation from which every later one (to the end of the run) is ≥ threshold."""
        start = None
        for e in self.evals:
            if e.mean_return < THRESHOLD:
                start = None
            elif start is None:
                start = e
        return start


class Evaluator:
    """Evaluates at the first call whose env-step count reaches each multiple of ``EVAL_EVERY``.

    Keeps the clock: ``now()`` is the training wall time so far, i.e. elapsed time minus the time
    spent inside evaluations, so evaluation never counts as training time for any method.
    """

    def __init__(self, run: Run) -> None:
        self.run, self.next_mark, self.last_eval_steps = run, EVAL_EVERY, -1
        self.start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.start - self.run.eval_wall

    def evaluate(self, env_steps: int, policy: nn.Module) -> None:
        mark = max(self.next_mark if env_steps < self.next_mark else
                   env_steps // EVAL_EVERY * EVAL_EVERY, EVAL_EVERY)
        train_wall = self.now()
        t0 = time.perf_counter()
        mean_return = float(course_envs.evaluate_policy(policy, ENV_ID, episodes=EVAL_EPISODES,
                                                        seed=EVAL_SEED, greedy=True).mean())
        self.run.eval_wall += time.perf_counter() - t0
        self.run.evals.append(Eval(mark, env_steps, train_wall, mean_return))
        self.last_eval_steps = env_steps

    def maybe(self, env_steps: int, policy: nn.Module) -> None:
        if env_steps >= self.next_mark:
            self.evaluate(env_steps, policy)
            self.next_mark = (env_steps // EVAL_EVERY + 1) * EVAL_EVERY

    def finish(self, env_steps: int, policy: nn.Module) -> None:
        """Evaluate the final policy too, unless that was just done."""
        self.run.train_wall, self.run.final_steps = self.now(), env_steps
        if env_steps != self.last_eval_steps:
            self.evaluate(env_steps, policy)


# ---------------------------------------------------------------- our side (course_lib trainers)
OURS = {"ppo": ("course_lib.rl.ppo", "PPOConfig"), "trpo": ("course_lib.rl.trpo", "TRPOConfig"),
        "reinforce": ("course_lib.rl.reinforce", "ReinforceConfig")}


def our_config(method: str, max_steps: int):
    """The trainer's default config with only the total env-step budget set to ``max_steps``."""
    module_name, config_name = OURS[method]
    module = importlib.import_module(module_name)
    config = getattr(module, config_name)()
    names = {f.name for f in dataclasses.fields(config)}
    for field in BUDGET_FIELDS:
        if field in names:
            return module, dataclasses.replace(config, **{field: max_steps})
    return module, config  # no step budget field: the callback below stops the run at max_steps


def run_ours(method: str, seed: int, max_steps: int) -> Run:
    module, config = our_config(method, max_steps)
    run = Run(f"ours_{method}", seed)
    last: dict[str, object] = {}

    def callback(env_steps: int, policy: nn.Module) -> bool:
        last.update(steps=env_steps, policy=policy)
        evaluator.maybe(env_steps, policy)
        return env_steps >= max_steps

    evaluator = Evaluator(run)
    result = module.train(config, seed=seed, callback=callback)
    evaluator.finish(int(last.get("steps", 0)), result.policy)
    return run


# ---------------------------------------------------------------- peers (SB3, sb3-contrib)
def import_peers():
    try:
        import sb3_contrib
        import stable_baselines3
    except ImportError as err:
        sys.exit(f"error: this benchmark needs Stable-Baselines3 and sb3-contrib ({err}).\n"
                 f'Install the benchmark extras with:  pip install -e ".[bench]"')
    return stable_baselines3, sb3_contrib


def linear_schedule(initial: float) -> Callable[[float], float]:
    """rl-baselines3-zoo's ``lin_X``: X times the remaining fraction of training (1 → 0)."""
    return lambda progress_remaining: progress_remaining * initial


class SB3Logits(nn.Module):
    """An SB3 actor-critic policy seen as ``obs (E, D) -> logits (E, A)``.

    Lets ``course_lib.rl.envs.evaluate_policy`` evaluate SB3 models exactly like ours: its greedy
    argmax of the logits is SB3's ``predict(obs, deterministic=True)`` for a Categorical policy.
    """

    def __init__(self, sb3_policy) -> None:
        super().__init__()
        self.sb3_policy = sb3_policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.sb3_policy.get_distribution(obs).distribution.logits


def run_sb3(method: str, seed: int, max_steps: int) -> Run:
    sb3, contrib = import_peers()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    run = Run(f"sb3_{method}", seed)

    class EvalCallback(BaseCallback):
        """Evaluates at rollout start, i.e. right after the previous ``train()``: the policy has
        then been trained on all ``num_timesteps`` steps, as in our ``callback(env_steps, policy)``
        (an ``_on_step`` check would evaluate mid-rollout, on a policy one update behind)."""

        def _on_rollout_start(self) -> None:
            evaluator.maybe(self.num_timesteps, SB3Logits(self.model.policy))

        def _on_step(self) -> bool:
            return True

    evaluator = Evaluator(run)  # the clock starts before env and model creation, as for ours
    if method == "ppo":
        hp = ZOO_PPO
        model = sb3.PPO("MlpPolicy", make_vec_env(ENV_ID, n_envs=hp["n_envs"], seed=seed),
                        n_steps=hp["n_steps"], batch_size=hp["batch_size"],
                        gae_lambda=hp["gae_lambda"], gamma=hp["gamma"], n_epochs=hp["n_epochs"],
                        ent_coef=hp["ent_coef"], learning_rate=linear_schedule(1e-3),
                        clip_range=linear_schedule(0.2), seed=seed, device="cpu", verbose=0)
    else:
        hp = ZOO_TRPO
        model = contrib.TRPO("MlpPolicy", make_vec_env(ENV_ID, n_envs=hp["n_envs"], seed=seed),
                             n_steps=hp["n_steps"], batch_size=hp["batch_size"],
                             cg_damping=hp["cg_damping"], gae_lambda=hp["gae_lambda"],
                             gamma=hp["gamma"], learning_rate=hp["learning_rate"],
                             n_critic_updates=hp["n_critic_updates"], seed=seed, device="cpu",
                             verbose=0)
    model.learn(total_timesteps=max_steps, callback=EvalCallback())
    evaluator.maybe(model.num_timesteps, SB3Logits(model.policy))  # after the last train()
    evaluator.finish(model.num_timesteps, SB3Logits(model.policy))
    return run


# ---------------------------------------------------------------- reporting
def summary(values: list[float], fmt: str) -> str:
    if not values:
        return "not reached"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def describe(runs: list[Run]) -> dict[str, dict]:
    out = {}
    for kind, getter in (("first", Run.first), ("good", Run.for_good)):
        hits = [h for h in map(getter, runs) if h is not None]
        out[kind] = dict(n=len(hits), marks=[h.mark for h in hits], steps=[h.steps for h in hits],
                         wall=[h.wall for h in hits])
    return out


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def print_method(name: str, runs: list[Run]) -> dict:
    d = describe(runs)
    print(f"\n{name}  ({len(runs)} seeds; medians [min–max] over the seeds that reached 475)")
    for kind, label in (("first", "first reaches 475"), ("good", "475 for good     ")):
        k = d[kind]
        missing = len(runs) - k["n"]
        note = f"  ({missing} seed{'s' if missing != 1 else ''} not reached)" if missing else ""
        print(f"  {label}: env steps {summary(k['steps'], '{:.0f}')}, "
              f"train wall s {summary(k['wall'], '{:.1f}')}{note}")
    walls = [r.train_wall for r in runs]
    print(f"  whole run ({runs[0].final_steps} steps): train wall s {summary(walls, '{:.1f}')}, "
          f"evaluation wall s (excluded) {summary([r.eval_wall for r in runs], '{:.1f}')}")
    return d


def print_run(run: Run) -> None:
    hit = lambda h: "-" if h is None else f"{h.steps} @ {h.wall:.1f}"  # noqa: E731
    returns = " ".join(f"{e.mean_return:.0f}" for e in run.evals)
    print(f"  {run.method:15} seed {run.seed}: first {hit(run.first()):>14} | for good "
          f"{hit(run.for_good()):>14} | train {run.train_wall:6.1f} s, eval {run.eval_wall:5.1f} s "
          f"| evals: {returns}", flush=True)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def print_targets(results: dict[str, list[Run]], stats: dict[str, dict]) -> None:
    print("\nTargets (a step target needs every seed to reach 475 and the median evaluation point to meet "
          "it;\n evaluation points are the multiples of 5000, each run at the first iteration reaching it)")
    for method, t in TARGETS.items():
        if f"ours_{method}" not in stats:
            continue
        ours, n = stats[f"ours_{method}"], len(results[f"ours_{method}"])
        for kind, label in (("first", "first reaches 475 within"), ("good", "stays ≥ 475 from    ")):
            med = median_or_none(ours[kind]["marks"])
            ok = med is not None and ours[kind]["n"] == n and med <= t[kind]
            shown = "not reached" if med is None else (
                f"{med:.0f} (actual env steps {median_or_none(ours[kind]['steps']):.0f}; "
                f"{ours[kind]['n']}/{n} seeds reached)")
            print(f"  [{verdict(ok)}] {method.upper()} {label} {t[kind]:>6} env steps: median {shown}")
        peer = stats.get(t["peer"])
        for kind in ("first", "good"):
            if peer is None:
                print(f"  [n/a ] {method.upper()} wall ratio ({kind}): peer not run")
                continue
            r_steps = ratio(median_or_none(ours[kind]["steps"]), median_or_none(peer[kind]["steps"]))
            r_wall = ratio(median_or_none(ours[kind]["wall"]), median_or_none(peer[kind]["wall"]))
            # ours never reached: MISS; only the peer never reached: no ratio to judge (n/a)
            ok = False if not ours[kind]["n"] else None if r_wall is None else r_wall <= t["wall_ratio"]
            fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
            counts = f"{ours[kind]['n']} vs {peer[kind]['n']} seeds reached"
            print(f"  [{verdict(ok)}] {method.upper()} ours/{t['peer']} ({kind:5}): train wall ratio "
                  f"{fmt(r_wall)} (target ≤ {t['wall_ratio']}), env-step ratio {fmt(r_steps)} "
                  f"(medians; {counts})")
    if "ours_reinforce" in stats:
        runs = results["ours_reinforce"]
        solved = stats["ours_reinforce"]["first"]["n"]
        ok = solved >= REINFORCE_MIN_SOLVED_FRACTION * len(runs)
        print(f"  [{verdict(ok)}] REINFORCE solves (mean eval return ≥ 475 at least once) in "
              f"{solved}/{len(runs)} seeds within {runs[0].final_steps} env steps "
              f"(target ≥ {REINFORCE_MIN_SOLVED_FRACTION:.0%} of the seeds)")


def print_machine(args: argparse.Namespace) -> None:
    versions = []
    for dist in ("policy-optimization-course", "torch", "gymnasium", "numpy",
                 "stable-baselines3", "sb3-contrib"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    print(f"CartPole-v1 peer benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("versions: " + ", ".join(versions))
    print(f"torch threads: {torch.get_num_threads()} for both sides (torch.set_num_threads(1)); "
          f"SB3 device='cpu'; all runs in one process, one at a time")
    print(f"settings: seeds 0..{args.seeds - 1}, {args.max_steps} env steps per run, evaluation at the "
          f"first iteration reaching each multiple of {EVAL_EVERY} (and at the end): greedy, mean of "
          f"{EVAL_EPISODES} episodes, env seeds {EVAL_SEED}..{EVAL_SEED + EVAL_EPISODES - 1}; "
          f"threshold {THRESHOLD:.0f}")
    print(f"peers: SB3 PPO {ZOO_PPO}; sb3-contrib TRPO {ZOO_TRPO} (rl-baselines3-zoo tuned CartPole-v1)")
    print("caveat: wall times are measured on a shared machine; compare the ratios measured in this run, "
          "not absolute seconds across runs")


class BenchmarkStopped(Exception):
    """Ctrl-C / SIGINT. Not a KeyboardInterrupt, which our trainers turn into a clean early stop."""


def _stop(signum, frame) -> None:
    raise BenchmarkStopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--only", choices=("ours", "sb3", "all"), default="all")
    parser.add_argument("--methods", default="ppo,trpo,reinforce")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(OURS)
    if unknown or args.seeds < 1 or args.max_steps < EVAL_EVERY:
        parser.error(f"bad arguments: unknown methods {sorted(unknown)}" if unknown
                     else f"--seeds must be ≥ 1 and --max-steps ≥ {EVAL_EVERY}")
    if args.only != "ours":
        import_peers()
    torch.set_num_threads(1)
    print_machine(args)
    jobs = []  # seeds outermost, so background load spreads over all methods alike
    for seed in range(args.seeds):
        for method in methods:
            if args.only in ("ours", "all"):
                jobs.append(("ours", method, seed))
            if args.only in ("sb3", "all") and method in ("ppo", "trpo"):
                jobs.append(("sb3", method, seed))
    if args.only in ("ours", "all"):
        for method in methods:
            print(f"ours_{method} config: {our_config(method, args.max_steps)[1]}")
    signal.signal(signal.SIGINT, _stop)
    results: dict[str, list[Run]] = {}
    t_start = time.perf_counter()
    print("\nruns (first / for-good: env steps @ train wall s; '-' = not reached):", flush=True)
    try:
        for side, method, seed in jobs:
            run = (run_ours if side == "ours" else run_sb3)(method, seed, args.max_steps)
            if torch.get_num_threads() != 1:
                raise RuntimeError(f"{run.method} changed the torch thread count to {torch.get_num_threads()}")
            results.setdefault(run.method, []).append(run)
            print_run(run)
    except BenchmarkStopped:  # keep the seeds that finished for every method
        complete = min(len(runs) for runs in results.values()) if results else 0
        results = {name: runs[:complete] for name, runs in results.items() if complete}
        print(f"\nINTERRUPTED: the summary below covers the {complete} seed(s) completed by every method")
    stats = {name: print_method(name, runs) for name, runs in results.items()}
    print_targets(results, stats)
    print(f"\nbenchmark wall time: {time.perf_counter() - t_start:.0f} s; "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
