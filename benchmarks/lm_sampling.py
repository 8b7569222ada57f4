"""Lesson 04's sampler against Hugging Face ``generate``, and how long the base models take to build.

What it measures (see benchmarks/README.md for the full description and the latest numbers), all
with one torch thread (``torch.set_num_threads(1)``) on the CPU, in one process:

1. **Base-model build time.** ``load_base_model(name, rebuild=True)`` for ``"addition"`` and
   ``"chain_sum"`` in a new temporary cache folder (``COURSE_CACHE_DIR``, deleted at the end): wall
   seconds, and the SFT steps, held-out greedy accuracy and build seconds of the returned ``.record``.
   Then the wall time of a cached load (median and best of the repeats; it includes checking the
   SHA-256 of every file). With ``--cache DIR`` that folder is used instead and nothing is rebuilt
   (a missing model is still built once, and the line says so).
2. **Sampling throughput**, completions per second, of ``course_lib.lm.sampling.sample`` against
   ``model.generate`` on the same model (the addition base model) and the same prompts (the first
   N test prompts after ``<bos>``, ``evaluation.model_prompts``), ``max_new_tokens`` =
   ``task.max_completion_chars + 1``:

   - greedy, 64 prompts × 1 (``generate(do_sample=False)``);
   - sampled at T = 1, 64 prompts × 8 (``num_generations=8``; ``generate(do_sample=True,
     temperature=1.0, top_k=0, num_return_sequences=8)``);
   - sampled at T = 1, 256 prompts × 8.

   Both sides are timed from the prompt strings to the completion texts: ours is one ``sample``
   call (it tokenizes, samples and decodes); the ``generate`` side tokenizes (left padding, with
   the attention mask), calls ``generate`` with ``pad_token_id`` and ``eos_token_id`` set, and
   decodes each row before its first EOS the way ``sample`` does. After one untimed warm-up of each,
   every setting is repeated ``--repeats`` times, ours and ``generate`` interleaved (the order
   alternates between repeats), and the best and median of the repeats are printed, with the
   ours/generate ratio of the completions per second.

   Checks (printed, never asserted), on the warm-up call, where both sides are seeded alike (ours
   its generator, ``generate`` torch's global generator, both with seed 0): the completions are
   compared token for token (each row's ids up to and including its first EOS; ``generate``'s
   output after the prompt). Greedy rows must all be identical. Sampled rows are identical too as
   long as both draw with ``torch.multinomial`` from the same probabilities in the same order, which
   nothing promises, so for sampling the script also prints the mean task reward ``correct`` of all
   timed samples of both sides, drawn on different seeds, with its standard error: the two should
   agree within a few standard errors.

Usage::

    python benchmarks/lm_sampling.py [--repeats 5] [--quick] [--cache DIR]
    python benchmarks/lm_sampling.py > benchmarks/results/lm_sampling_$(date +%F).txt

``--quick`` runs 2 repeats instead of 5, and times one cached load instead of 5. Timings on a shared
machine move with its load: the load average is printed at the start and at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

NAMES = ("addition", "chain_sum")
# (label, number of prompts, completions per prompt, greedy)
SETTINGS = (("greedy, 64 prompts x 1", 64, 1, True),
            ("sampled T=1, 64 prompts x 8", 64, 8, False),
            ("sampled T=1, 256 prompts x 8", 256, 8, False))
SEED = 0


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_header(args: argparse.Namespace, cache: Path, temporary: bool) -> None:
    versions = []
    for dist in ("policy-optimization-course", "torch", "transformers", "tokenizers"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    print(f"LM sampling benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPU cores ({cpu_model()}), "
          f"Python {platform.python_version()}")
    print(f"load average at the start (1, 5, 15 min): {load_average()}")
    print("versions: " + ", ".join(versions))
    print(f"torch threads: {torch.get_num_threads()} (torch.set_num_threads(1)); CPU; one process, one call at a time")
    print(f"cache: {cache}{' (temporary, deleted at the end)' if temporary else ' (--cache)'}")
    print(f"repeats: {args.repeats} timed runs per side and setting, after 1 warm-up each; "
          f"ours and generate interleaved")


def check_threads(where: str) -> None:
    if torch.get_num_threads() != 1:
        raise RuntimeError(f"{where} changed the torch thread count to {torch.get_num_threads()}")


# ---------------------------------------------------------------- 3. base-model build time
def build_times(args: argparse.Namespace, temporary: bool):
    from transformers.utils import logging as hf_logging

    from course_lib.lm.base_models import load_base_model

    print("\n== Base models: build and load (wall seconds, 1 torch thread) ==")
    print(f"{'model':<10} {'what':<28} {'wall s':>8} {'SFT steps':>10} {'accuracy':>9} {'record s':>9}")
    models = {}
    for name in NAMES:
        hf_logging.disable_progress_bar()  # save_pretrained's bar (each load turns bars back on)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "rebuilding it" warnings: a rebuild was asked for
            base = load_base_model(name, rebuild=temporary, progress=False)
        wall = time.perf_counter() - start
        check_threads(f"building {name}")
        what = ("rebuild=True (fresh cache)" if temporary else
                "built (was not in --cache)" if base.built else "loaded from --cache")
        record = base.record
        print(f"{name:<10} {what:<28} {wall:8.2f} {record['sft_steps']:>10} {record['eval_accuracy']:>9.3f} "
              f"{record['build_seconds']:>9.1f}", flush=True)
        models[name] = base
    repeats = 1 if args.quick else 5
    for name in NAMES:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            base = load_base_model(name, progress=False)
            times.append(time.perf_counter() - start)
            assert not base.built
        print(f"{name:<10} {'cached load':<28} {statistics.median(times):8.3f}   "
              f"(median of {repeats}, best {min(times):.3f} s)")
    print("('record s' and 'accuracy' come from the build's .record: build_seconds and the greedy held-out "
          "accuracy SFT stopped at; 'wall s' also includes saving, hashing and loading)")
    return models


# ---------------------------------------------------------------- 1. sampling throughput
def ours_fn(model, tokenizer, prompts: list[str], generations: int, greedy: bool, max_new: int,
            generator: torch.Generator) -> Callable[[], tuple[list[torch.Tensor], list[str]]]:
    from course_lib.lm.sampling import sample

    def run():
        done = sample(model, tokenizer, prompts, num_generations=generations, max_new_tokens=max_new,
                      temperature=1.0, greedy=greedy, generator=None if greedy else generator)
        lengths = done.completion_mask.sum(dim=1).tolist()  # up to and including the first EOS
        return [row[:n] for row, n in zip(done.completion_ids, lengths, strict=True)], done.texts
    return run


def generate_fn(model, tokenizer, prompts: list[str], generations: int, greedy: bool,
                max_new: int) -> Callable[[], tuple[list[torch.Tensor], list[str]]]:
    from course_lib.lm.sampling import completion_mask_from_ids

    eos = tokenizer.eos_token_id
    options = (dict(do_sample=False) if greedy else
               dict(do_sample=True, temperature=1.0, top_k=0, num_return_sequences=generations))

    def run():
        batch = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
                             **options)
        new = out[:, batch["input_ids"].shape[1]:]  # (B, C) after the prompt
        mask = completion_mask_from_ids(new, eos)
        lengths = mask.sum(dim=1).tolist()
        has_eos = (new == eos).any(dim=1).tolist()
        rows = [row[:n] for row, n in zip(new, lengths, strict=True)]
        texts = [tokenizer.decode(row[: n - int(e)].tolist()) for row, n, e in zip(new, lengths, has_eos, strict=True)]
        return rows, texts
    return run


def timed(fn) -> tuple[float, tuple[list[torch.Tensor], list[str]]]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def accuracy(task, prompts: list[str], texts: list[str]) -> tuple[float, float]:
    rewards = task.reward(prompts, texts, kind="correct")
    mean = sum(rewards) / len(rewards)
    return mean, (mean * (1 - mean) / len(rewards)) ** 0.5


def sampling_throughput(args: argparse.Namespace, base) -> list[dict]:
    from course_lib.lm.evaluation import model_prompts

    model, tokenizer, task = base.model, base.tokenizer, base.task
    model.eval()
    max_new = task.max_completion_chars + 1
    print(f"\n== Sampling: course_lib.lm.sampling.sample vs model.generate (addition base model, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, max_new_tokens={max_new}) ==")
    rows = []
    for label, num_prompts, generations, greedy in SETTINGS:
        task_prompts = [example.prompt for example in task.test[:num_prompts]]
        prompts = model_prompts(tokenizer, task_prompts)
        repeated = [p for p in task_prompts for _ in range(generations)]
        generator = torch.Generator()
        sides = {"ours": ours_fn(model, tokenizer, prompts, generations, greedy, max_new, generator),
                 "generate": generate_fn(model, tokenizer, prompts, generations, greedy, max_new)}
        times: dict[str, list[float]] = {"ours": [], "generate": []}
        texts: dict[str, list[str]] = {"ours": [], "generate": []}
        first: dict[str, list[torch.Tensor]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generate's notes about its generation config
            # Warm-up, untimed, both sides seeded alike (ours: its generator; generate: torch's global
            # one): its ids feed the token-for-token check.
            generator.manual_seed(SEED)
            torch.manual_seed(SEED)
            for side, fn in sides.items():
                first[side], _ = fn()
            # Timed runs on different seeds, so the accuracy check compares independent samples.
            generator.manual_seed(SEED + 1)
            torch.manual_seed(SEED + 2)
            for repeat in range(args.repeats):
                order = ("ours", "generate") if repeat % 2 == 0 else ("generate", "ours")
                for side in order:
                    seconds, (_, out_texts) = timed(sides[side])
                    times[side].append(seconds)
                    texts[side].extend(out_texts)
        check_threads(label)
        completions = num_prompts * generations
        row = dict(label=label, completions=completions, greedy=greedy)
        for side in sides:
            row[side] = dict(best=completions / min(times[side]), median=completions / statistics.median(times[side]),
                             ms=1000 * statistics.median(times[side]))
        same = sum(torch.equal(a, b) for a, b in zip(first["ours"], first["generate"], strict=True))
        if greedy:
            row["check"] = f"ids identical up to EOS: {same}/{completions} rows"
            row["check"] += "" if same == completions else "  <-- MISMATCH"
            acc = {side: accuracy(task, repeated, texts[side][:completions]) for side in sides}
            row["check"] += f"; accuracy ours {acc['ours'][0]:.3f}, generate {acc['generate'][0]:.3f}"
        else:
            acc = {side: accuracy(task, repeated * args.repeats, texts[side]) for side in sides}
            gap = abs(acc["ours"][0] - acc["generate"][0]) / max((acc["ours"][1] ** 2 + acc["generate"][1] ** 2) ** 0.5,
                                                                  1e-12)
            row["check"] = (f"mean 'correct' of the {completions * args.repeats} timed samples per side "
                            f"(independent seeds): ours {acc['ours'][0]:.3f} ± {acc['ours'][1]:.3f}, generate "
                            f"{acc['generate'][0]:.3f} ± {acc['generate'][1]:.3f} (difference "
                            f"{gap:.1f} standard errors); warm-up with equal seeds: {same}/{completions} rows "
                            f"identical up to EOS")
        rows.append(row)
        print(f"  {label}: ours median {row['ours']['ms']:.0f} ms, generate median {row['generate']['ms']:.0f} ms",
              flush=True)
    print(f"\ncompletions per second (best and median of {args.repeats} timed runs; ratio = ours / generate)")
    print(f"{'setting':<30} {'ours best':>10} {'ours med':>10} {'gen best':>10} {'gen med':>10} "
          f"{'ratio best':>11} {'ratio med':>10}")
    for row in rows:
        ours, gen = row["ours"], row["generate"]
        print(f"{row['label']:<30} {ours['best']:>10.0f} {ours['median']:>10.0f} {gen['best']:>10.0f} "
              f"{gen['median']:>10.0f} {ours['best'] / gen['best']:>11.2f} {ours['median'] / gen['median']:>10.2f}")
    print("\nchecks")
    for row in rows:
        print(f"  {row['label']}: {row['check']}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per side and setting (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 cached load")
    parser.add_argument("--cache", type=Path, default=None,
                        help="use this COURSE_CACHE_DIR (no rebuilds) instead of a new temporary one")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    torch.set_num_threads(1)
    temporary = args.cache is None
    root = Path(tempfile.mkdtemp(prefix="lm-sampling-bench-")) if temporary else args.cache.expanduser()
    os.environ["COURSE_CACHE_DIR"] = str(root)
    from course_lib.lm.base_models import cache_dir

    print_header(args, cache_dir(), temporary)
    t_start = time.perf_counter()
    try:
        models = build_times(args, temporary)
        sampling_throughput(args, models["addition"])
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nbenchmark wall time: {time.perf_counter() - t_start:.0f} s; "
          f"load average at the end (1, 5, 15 min): {load_average()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
