"""Pretraining speed: data loader, bare training loop and ``pretrain`` itself, per small model preset.

    python benchmarks/pretrain_speed.py                         # grover-test, grover-tiny, grover-small
    python benchmarks/pretrain_speed.py --presets grover-tiny --batch-size 64 --window 256

Data: the demo run's tokenizer and tokenized genome (``--run``, default /tmp/runs/demo). For each preset,
on one model and the same batches:

1. loader: ``WindowSampler.sample`` + ``collate_windows`` + ``mask_tokens`` alone, i.e. what one
   training step needs of data;
2. bare loop: forward, loss, backward and AdamW step on pre-made tensors (the very batches
   ``pretrain`` draws first), nothing else; the loss as ``pretrain`` computes it (cross-entropy on the
   selected positions' logits only), so both loops do the same arithmetic;
3. full step: ``pretrain(...)`` called as the pipeline calls it (its settings, log_every, a JSON-lines
   log file), timed by its own result (``tokens_seen / seconds``), after a warm-up call so first-step
   costs are left out.

Tokens are non-padding tokens ([CLS] and [SEP] included), counted as ``pretrain`` counts them. Each
measurement is repeated (loader, bare, full back to back in every repeat, bare and full taking turns at
going first) and the median reported; ratios are medians of the per-repeat ratios, which stay fair when
other jobs load the machine. Targets: the loader at least 10x faster than the model, the full step at
least 90% of the bare loop's speed.
Finally one more bare pass and one ``pretrain`` call run with timers around each part of a step
(wrapped functions and hooks, removed afterwards) to show where the full step's extra time goes.
Figures are printed and written to the "## Pretraining speed" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analysis.run as run_format  # noqa: E402
import grover_core.pretrain as pretrain_module  # noqa: E402
from grover_core.model import build_model, count_parameters, model_config  # noqa: E402
from grover_core.pretrain import (  # noqa: E402
    IGNORE_INDEX, PretrainConfig, WindowSampler, autocast_for, collate_windows, mask_tokens, pick_device, pretrain,
    split_regions)
from grover_core.tokenized_genome import TokenizedGenome  # noqa: E402
from grover_core.tokenizer import load_tokenizer, special_token_mask  # noqa: E402

from _markdown import write_section  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

SECTION = "## Pretraining speed"
LOADER_TARGET = 10.0  # the loader must outrun the model by this factor to stay out of the way
FULL_TARGET = 0.90  # pretrain(...) must reach this fraction of the bare loop's speed
HIGH_SPREAD = 0.10  # (max - min) / median of a measurement's repeats above this: flagged as noisy
WARMUP_STEPS = 2  # untimed steps before the first timed bare pass and the first timed pretrain call
LOADER_MIN_SECONDS = 1.0  # the loader runs at least this long per repeat ...
LOADER_MIN_BATCHES = 20  # ... and at least this many batches


@dataclass(frozen=True)
class Plan:
    """What one preset is measured on."""

    window: int  # longest window in genome tokens (pretrain clips it to the preset's positions)
    batch_size: int
    steps: int  # timed steps per bare pass and per pretrain call


DEFAULT_PLANS = {
    "grover-test": Plan(window=128, batch_size=32, steps=100),  # the preset holds 64 tokens at most; ~15 ms steps
    "grover-tiny": Plan(window=128, batch_size=32, steps=30),  # the demo's setting; ~0.2 s steps on 2 cores
    "grover-small": Plan(window=510, batch_size=8, steps=8),  # GROVER's window; ~1.5 s steps, so a small batch
}

# Parts of a step, in the order they happen; "other" is the step time no timer saw.
PARTS = ("sample", "collate", "mask", "forward", "loss", "zero_grad", "backward", "clip_grad_norm", "optimizer_step",
         "other")
LOADER_PARTS = ("sample", "collate", "mask", "clip_grad_norm")  # parts the bare loop does not have


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def pipeline_pretrain_config(plan: Plan, max_window_tokens: int) -> PretrainConfig:
    """The pipeline's pretraining settings (learning rate, warm-up, log_every, masking) with the plan's shape."""
    from grover_lens.pipeline import RunConfig

    return dataclasses.replace(RunConfig().pretrain, steps=plan.steps, batch_size=plan.batch_size,
                               max_window_tokens=max_window_tokens)


def make_batches(genome: TokenizedGenome, tokenizer, config: PretrainConfig, special: torch.Tensor,
                 max_tokens: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The first ``count`` batches ``pretrain`` draws with ``config``: ``(input_ids, attention_mask, labels)``."""
    train, _ = split_regions(genome, config)
    sampler = WindowSampler(genome, train, min_tokens=min(config.min_window_tokens, max_tokens), max_tokens=max_tokens,
                            full_window_fraction=config.full_window_fraction, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    batches = []
    for _ in range(count):
        batch = collate_windows([w for _, _, w in sampler.sample(config.batch_size)], tokenizer)
        input_ids, labels = mask_tokens(batch["input_ids"], special=special, mask_token_id=tokenizer.mask_token_id,
                                        config=config.masking, generator=generator)
        batches.append((input_ids, batch["attention_mask"], labels))
    return batches


def measure_loader(genome: TokenizedGenome, tokenizer, config: PretrainConfig, special: torch.Tensor,
                   max_tokens: int, *, seed: int) -> float:
    """Tokens per second of sampling, collating and masking batches, nothing else."""
    train, _ = split_regions(genome, config)
    sampler = WindowSampler(genome, train, min_tokens=min(config.min_window_tokens, max_tokens), max_tokens=max_tokens,
                            full_window_fraction=config.full_window_fraction, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    tokens, batches, started = 0, 0, time.perf_counter()
    while batches < LOADER_MIN_BATCHES or time.perf_counter() - started < LOADER_MIN_SECONDS:
        batch = collate_windows([w for _, _, w in sampler.sample(config.batch_size)], tokenizer)
        mask_tokens(batch["input_ids"], special=special, mask_token_id=tokenizer.mask_token_id, config=config.masking,
                    generator=generator)
        tokens += int(batch["attention_mask"].sum())
        batches += 1
    return tokens / (time.perf_counter() - started)


def make_optimizer(model: torch.nn.Module, config: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as ``pretrain`` builds it (same groups and settings, so the same per-step work)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6, fused=device.type == "cuda")


def bare_loop(model, optimizer, batches, device: torch.device) -> tuple[int, float, dict[str, float]]:
    """Forward, loss, backward, optimizer step over pre-made batches; return ``(tokens, seconds, seconds per part)``.

    The loss is ``pretrain``'s: cross-entropy over the selected positions' logits only.
    """
    model.train()
    parts: dict[str, float] = defaultdict(float)
    tokens = sum(int(mask.sum()) for _, mask, _ in batches)
    moved = [(ids.to(device), mask.to(device), labels.to(device)) for ids, mask, labels in batches]
    _sync(device)
    started = time.perf_counter()
    for input_ids, attention_mask, labels in moved:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        with autocast_for(device):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            t2 = time.perf_counter()
            chosen = labels != IGNORE_INDEX
            loss = torch.nn.functional.cross_entropy(logits[chosen].float(), labels[chosen])
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        optimizer.step()
        t5 = time.perf_counter()
        parts["zero_grad"] += t1 - t0
        parts["forward"] += t2 - t1
        parts["loss"] += t3 - t2
        parts["backward"] += t4 - t3
        parts["optimizer_step"] += t5 - t4
    _sync(device)
    seconds = time.perf_counter() - started
    parts["other"] = seconds - sum(parts.values())
    return tokens, seconds, dict(parts)


@contextlib.contextmanager
def step_part_timers(model: torch.nn.Module, parts: dict[str, float]):
    """Add the seconds spent in each part of ``pretrain``'s step to ``parts`` while inside.

    Wraps the functions ``pretrain`` calls (looked up at call time, so wrapping the module attribute
    is seen) and hooks the model's forward and every optimizer step; all is undone on exit. A part
    ``pretrain`` stops calling simply stays at zero and its time shows under "other".
    """
    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - t0
        return wrapper

    targets = [(WindowSampler, "sample", "sample"), (pretrain_module, "collate_windows", "collate"),
               (pretrain_module, "mask_tokens", "mask"), (torch.Tensor, "backward", "backward"),
               (torch.optim.Optimizer, "zero_grad", "zero_grad"),
               (torch.nn.functional, "cross_entropy", "loss"), (torch.nn.utils, "clip_grad_norm_", "clip_grad_norm")]
    if hasattr(pretrain_module, "clip_grad_norm_"):  # in case pretrain imports it by name one day
        targets.append((pretrain_module, "clip_grad_norm_", "clip_grad_norm"))
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]
    clock: dict[str, float] = {}

    def started(name):
        return lambda *args: clock.__setitem__(name, time.perf_counter())

    def ended(name):
        def hook(*args):
            parts[name] += time.perf_counter() - clock.pop(name)
        return hook

    handles = [model.register_forward_pre_hook(started("forward")), model.register_forward_hook(ended("forward")),
               register_optimizer_step_pre_hook(started("optimizer_step")),
               register_optimizer_step_post_hook(ended("optimizer_step"))]
    try:
        for owner, attr, name in targets:
            setattr(owner, attr, timed(name, getattr(owner, attr)))
        yield parts
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)
        for handle in handles:
            handle.remove()


def measure_preset(preset: str, plan: Plan, *, tokenizer, genome: TokenizedGenome, repeats: int,
                   breakdown: bool, scratch: Path, log=print) -> dict:
    """Run the three measurements (and the breakdown) for one preset; return figures and raw repeats.

    ``scratch`` takes ``pretrain``'s training log, as the pipeline gives it one.
    """
    device = pick_device()
    shape = model_config(preset)
    max_tokens = min(plan.window, shape.max_window_tokens)  # what pretrain itself will use
    config = pipeline_pretrain_config(plan, max_tokens)
    special = torch.from_numpy(special_token_mask(tokenizer))
    model = build_model(shape, tokenizer, seed=0)  # built once, outside every timing
    batches = make_batches(genome, tokenizer, config, special, max_tokens, plan.steps)
    optimizer = make_optimizer(model, config, device)

    # Warm-up: first-call costs (allocations, kernel selection, optimizer state) out of the timings.
    log_path = scratch / f"{preset}.training_log.jsonl"
    bare_loop(model, optimizer, batches[:WARMUP_STEPS], device)
    pretrain(model, tokenizer, genome, config=dataclasses.replace(config, steps=WARMUP_STEPS), log_path=log_path)

    loader, bare, full = [], [], []
    for repeat in range(repeats):
        loader.append(measure_loader(genome, tokenizer, config, special, max_tokens, seed=1000 + repeat))
        for which in ("bare", "full") if repeat % 2 == 0 else ("full", "bare"):  # neither always goes first
            if which == "bare":
                tokens, seconds, _ = bare_loop(model, optimizer, batches, device)
                bare.append(tokens / seconds)
            else:
                result = pretrain(model, tokenizer, genome, config=config, log_path=log_path)
                full.append(result.tokens_seen / result.seconds)
        if result.tokens_seen != tokens:
            log(f"  note: pretrain saw {result.tokens_seen} tokens, the bare loop {tokens} (batches differ)")
        log(f"  {preset} repeat {repeat + 1}/{repeats}: loader {loader[-1]:,.0f} tok/s, bare {bare[-1]:,.0f} tok/s, "
            f"full {full[-1]:,.0f} tok/s ({result.seconds / plan.steps * 1e3:.1f} ms/step)")

    figures = {
        "preset": preset, "device": str(device), "parameters": count_parameters(model), "window": max_tokens,
        "requested_window": plan.window, "batch_size": plan.batch_size, "steps": plan.steps, "repeats": repeats,
        "tokens_per_step": tokens / plan.steps,
        "padded_tokens_per_step": sum(ids.numel() for ids, _, _ in batches) / plan.steps,
        "loader_tokens_per_s": statistics.median(loader), "bare_tokens_per_s": statistics.median(bare),
        "full_tokens_per_s": statistics.median(full),
        "loader_over_bare": statistics.median([a / b for a, b in zip(loader, bare)]),
        "full_over_bare": statistics.median([a / b for a, b in zip(full, bare)]),
        "spread": {"loader": _spread(loader), "bare": _spread(bare), "full": _spread(full)},
        "repeats_tokens_per_s": {"loader": loader, "bare": bare, "full": full},
    }
    if breakdown:
        _, bare_seconds, bare_parts = bare_loop(model, optimizer, batches, device)
        full_parts: dict[str, float] = defaultdict(float)
        with step_part_timers(model, full_parts):
            result = pretrain(model, tokenizer, genome, config=config, log_path=log_path)
        full_parts = dict(full_parts)
        full_parts["other"] = result.seconds - sum(full_parts.values())
        figures["breakdown_ms_per_step"] = {
            "bare": {**{p: bare_parts.get(p, 0.0) / plan.steps * 1e3 for p in PARTS},
                     "total": bare_seconds / plan.steps * 1e3},
            "full": {**{p: full_parts.get(p, 0.0) / plan.steps * 1e3 for p in PARTS},
                     "total": result.seconds / plan.steps * 1e3},
        }
    return figures


def where_time_goes(figures: dict) -> str:
    """One sentence: how much slower a full step is than a bare one, and which parts make up the gap."""
    bd = figures["breakdown_ms_per_step"]
    gap = bd["full"]["total"] - bd["bare"]["total"]
    shares = sorted(((bd["full"][p] - bd["bare"][p], p) for p in PARTS), reverse=True)
    listed = ", ".join(f"{p} {ms:+.1f}" for ms, p in shares if abs(ms) >= max(0.05 * abs(gap), 0.05))
    return (f"`{figures['preset']}`: a full step takes {bd['full']['total']:.1f} ms, the bare one "
            f"{bd['bare']['total']:.1f} ms ({gap:+.1f} ms; by part, full minus bare, ms: {listed}).")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: list[dict], *, command: str, started: dict, ended: dict) -> str:
    """The BENCHMARKS.md section (Markdown) for these results."""
    cpu = started["cpu"]
    lines = [SECTION, "",
             f"`{command}` on this machine ({os.cpu_count()} cores{', ' + cpu if cpu else ''}), "
             f"{started['date']}; torch {torch.__version__}, {torch.get_num_threads()} intra-op threads "
             f"({torch.get_num_interop_threads()} inter-op), device {results[0]['device'] if results else 'n/a'}. "
             f"Load average (1 min) {started['load']:.2f} at the start and {ended['load']:.2f} at the end "
             "(the benchmark alone adds about 2).", "",
             "Data: the demo run's tokenized genome and tokenizer. Tokens are non-padding tokens per second, as "
             "`pretrain` counts them; windows are GROVER's mix (half full length, the rest 20 tokens to full). "
             "Loader: `WindowSampler.sample` + `collate_windows` + `mask_tokens`. Bare loop: forward, loss "
             "(cross-entropy on the selected positions, as `pretrain` computes it), backward, AdamW step on "
             "pre-made tensors (`pretrain`'s own first batches). Full step: `pretrain(...)` called as the pipeline "
             "calls it (its settings, log_every, a training-log file), timed by its result after a warm-up call. "
             "Medians of the repeats; ratios are medians of per-repeat ratios (bare and full take turns at going "
             f"first). Targets: loader / bare >= {LOADER_TARGET:g}x, full / bare >= {FULL_TARGET:.0%}.", "",
             "| preset | parameters | window (tokens) | batch | steps x repeats | tokens / step (padded) | "
             "loader tok/s | bare loop tok/s | loader / bare | full step tok/s | full / bare | "
             "spread (loader / bare / full) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        window = str(r["window"])
        if r["window"] != r["requested_window"]:
            window += f" (asked {r['requested_window']})"
        spread = " / ".join(f"{r['spread'][k]:.0%}" for k in ("loader", "bare", "full"))
        if max(r["spread"].values()) > HIGH_SPREAD:
            spread += " (high)"
        lines.append(
            f"| {r['preset']} | {r['parameters'] / 1e6:.2f}M | {window} | {r['batch_size']} | "
            f"{r['steps']} x {r['repeats']} | {r['tokens_per_step']:,.0f} ({r['padded_tokens_per_step']:,.0f}) | "
            f"{r['loader_tokens_per_s']:,.0f} | {r['bare_tokens_per_s']:,.0f} | "
            f"{r['loader_over_bare']:.1f}x {_verdict(r['loader_over_bare'] >= LOADER_TARGET)} | "
            f"{r['full_tokens_per_s']:,.0f} | "
            f"{r['full_over_bare']:.1%} {_verdict(r['full_over_bare'] >= FULL_TARGET)} | "
            f"{spread} |")
    noisy = [r["preset"] for r in results if max(r["spread"].values()) > HIGH_SPREAD]
    if noisy:
        lines += ["", f"High variance (a measurement's repeats spread more than {HIGH_SPREAD:.0%} of their median) "
                  f"for {', '.join(noisy)}: other jobs shared the cores; read those figures as rough."]
    with_breakdown = [r for r in results if "breakdown_ms_per_step" in r]
    if with_breakdown:
        lines += ["", "Where a step's time goes (ms per step; one more bare pass and one `pretrain` call with timers "
                  "around each part; \"other\" is what no timer saw: learning-rate update, picking the selected "
                  "logits, token counts, logging). One pass each, so forward and backward differing by a few percent "
                  "between the loops is run-to-run noise; sample, collate, mask, clip_grad_norm and other are the "
                  "work only the full step does:", "",
                  "| preset | loop | " + " | ".join(PARTS) + " | total |",
                  "|---|---|" + "---|" * (len(PARTS) + 1)]
        for r in with_breakdown:
            for loop in ("bare", "full"):
                bd = r["breakdown_ms_per_step"][loop]
                cells = " | ".join("" if loop == "bare" and p in LOADER_PARTS else f"{bd[p]:.2f}" for p in PARTS)
                lines.append(f"| {r['preset']} | {loop} | {cells} | {bd['total']:.2f} |")
        lines += [""] + [f"- {where_time_goes(r)}" for r in with_breakdown]
    return "\n".join(lines) + "\n"


def _machine_state() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    return {"date": dt.date.today().isoformat(), "load": os.getloadavg()[0], "cpu": cpu or platform.processor()}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PLANS), choices=list(DEFAULT_PLANS))
    parser.add_argument("--window", type=int,
                        help="window tokens for every preset (default: 128; 510 for grover-small)")
    parser.add_argument("--batch-size", type=int, help="batch size for every preset (default: 32; 8 for grover-small)")
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default: 100 / 30 / 8)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement; medians are reported")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing of a step")
    parser.add_argument("--run", default="/tmp/runs/demo", help="a run folder with tokenizer/ and tokenized/")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/pretrain_speed.py", *(sys.argv[1:] if argv is None else argv)])

    run = Path(args.run)
    if not (run / run_format.TOKENIZED_DIR / "index.json").is_file() or not (run / run_format.TOKENIZER_DIR).is_dir():
        raise SystemExit(f"{run} has no {run_format.TOKENIZER_DIR}/ and {run_format.TOKENIZED_DIR}/ folders. Build the "
                         f"demo run first: grover demo --out {run} --genome-dir /tmp/demogenome")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as transformers_logging
    transformers_logging.set_verbosity_error()
    tokenizer = load_tokenizer(run / run_format.TOKENIZER_DIR)
    genome = TokenizedGenome.open(run / run_format.TOKENIZED_DIR)

    started, t0, results = _machine_state(), time.perf_counter(), []
    print(f"{command}\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {started['load']:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.presets:
            plan = dataclasses.replace(DEFAULT_PLANS[preset], **{k: v for k, v in (
                ("window", args.window), ("batch_size", args.batch_size), ("steps", args.steps)) if v})
            print(f"{preset}: {plan}", flush=True)
            results.append(measure_preset(preset, plan, tokenizer=tokenizer, genome=genome, repeats=args.repeats,
                                          breakdown=not args.no_breakdown, scratch=Path(scratch),
                                          log=lambda m: print(m, flush=True)))
    ended = _machine_state()
    section = report(results, command=command, started=started, ended=ended)
    print(f"\n{section}\n({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.no_write:
        write_section(Path(args.out), section)
    return results


if __name__ == "__main__":
    main()
