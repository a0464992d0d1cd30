"""Randomized float64 property tests: every loss against an independent plain-Python reimplementation.

Each reference below is written from the definitions (NeMo-RL's semantics, see the loss docstrings),
one token at a time with `math`, including its gradient worked out by hand; the library's tensor code
and autograd must agree with it to round-off on hundreds of random batches and configurations.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
import torch

from reinforge.algorithms.loss_utils import kl_penalty
from reinforge.algorithms.losses import ClippedPGLoss, ClippedPGLossConfig, DPOLoss, DPOLossConfig, NLLLoss

Grid = list[list[float]]
TOLERANCE = 1e-9


def zeros(rows: int, cols: int) -> Grid:
    return [[0.0] * cols for _ in range(rows)]


# ------------------------------------------------------------------------- KL estimators
def reference_kl(
    logprob: float, reference: float, kind: str, input_clamp: float | None, output_clamp: float | None, weight: float
) -> tuple[float, float]:
    """(value, d value / d logprob) of w * k(clamp(ref - logprob)), clamped; `weight` = pi / pi_behaviour (its own derivative)."""
    log_ratio = reference - logprob
    clamped_in = input_clamp is not None and abs(log_ratio) > input_clamp
    if input_clamp is not None:
        log_ratio = max(-input_clamp, min(input_clamp, log_ratio))
    if kind == "k1":
        k, dk = -log_ratio, 1.0
    elif kind == "k2":
        k, dk = log_ratio * log_ratio / 2, -log_ratio
    else:
        k, dk = math.exp(log_ratio) - 1 - log_ratio, 1 - math.exp(log_ratio)
    value = weight * k
    grad = 0.0 if clamped_in else weight * (k + dk)  # d(w k) = w k + w dk: w = exp(logprob - sg(.))
    if output_clamp is not None and abs(value) > output_clamp:
        return math.copysign(output_clamp, value), 0.0
    return value, grad


def test_kl_estimators_match_reference_on_random_tokens() -> None:
    rng = random.Random(21)
    for case in range(300):
        kind = rng.choice(["k1", "k2", "k3"])
        input_clamp = rng.choice([None, 20.0, 2.0, 0.5])
        output_clamp = rng.choice([None, 10.0, 1.0])
        on_policy = rng.random() < 0.5
        size = rng.randint(1, 12)
        logprobs = [-rng.uniform(0.0, 6.0) for _ in range(size)]
        references = [x + rng.choice([rng.gauss(0, 1), rng.uniform(-25, 25)]) for x in logprobs]
        behaviour = [x + rng.gauss(0, 0.5) for x in logprobs]
        current = torch.tensor(logprobs, dtype=torch.float64, requires_grad=True)
        kl = kl_penalty(
            current,
            torch.tensor(references, dtype=torch.float64),
            kind,
            input_clamp,
            output_clamp,
            sampling_logprobs=torch.tensor(behaviour, dtype=torch.float64) if on_policy else None,
        )
        kl.sum().backward()
        for i in range(size):
            weight = math.exp(logprobs[i] - behaviour[i]) if on_policy else 1.0
            value, grad = reference_kl(logprobs[i], references[i], kind, input_clamp, output_clamp, weight)
            assert kl[i].item() == pytest.approx(value, abs=TOLERANCE, rel=TOLERANCE), (case, i)
            # k3's gradient w (k + dk) cancels e^logr against itself: round-off scales with those terms
            magnitude = weight * (1 + math.exp(min(abs(references[i] - logprobs[i]), input_clamp or math.inf)))
            assert current.grad[i].item() == pytest.approx(grad, abs=TOLERANCE * magnitude, rel=TOLERANCE), (case, i)


# ------------------------------------------------------------------------- clipped PG loss
def random_pg_config(rng: random.Random) -> tuple[ClippedPGLossConfig, bool]:
    """A random valid configuration, and whether the batch carries prev_logprobs."""
    mode = rng.choice(["ppo", "ppo", "reinforce", "forced", "cispo", "gspo"])
    options: dict[str, Any] = {
        "ratio_clip_min": rng.uniform(0.0, 0.5),
        "ratio_clip_max": rng.uniform(0.0, 0.5),
        "disable_ppo_ratio": mode == "reinforce",
        "force_on_policy_ratio": mode == "forced",
        "use_cispo": mode == "cispo",
        "sequence_level_importance_ratios": mode == "gspo",
        "token_level_loss": {"gspo": False, "cispo": True}.get(mode, rng.random() < 0.5),
    }
    if mode in ("ppo", "gspo") and rng.random() < 0.5:
        options["ratio_clip_c"] = rng.uniform(1.2, 4.0)
    if rng.random() < 0.6:
        options["reference_policy_kl_penalty"] = rng.uniform(0.01, 0.5)
        options["reference_policy_kl_type"] = rng.choice(["k1", "k2", "k3"])
        options["kl_input_clamp_value"] = rng.choice([None, 20.0, 1.5])
        options["kl_output_clamp_value"] = rng.choice([None, 10.0, 0.5])
        options["use_on_policy_kl_approximation"] = rng.random() < 0.4
    if rng.random() < 0.6:
        options["use_importance_sampling_correction"] = True
        kinds = [None, "tis", "icepop"] + ([] if mode == "gspo" else ["seq-mask-tis"])
        kind = rng.choice(kinds)
        if kind is not None:
            low = rng.uniform(0.0, 1.0)
            options.update(
                truncated_importance_sampling_type=kind,
                truncated_importance_sampling_ratio_min=low,
                truncated_importance_sampling_ratio_max=max(low + 0.05, rng.uniform(0.9, 2.0)),
            )
    has_prev = mode != "forced" and (mode != "reinforce" or rng.random() < 0.5)
    return ClippedPGLossConfig(**options), has_prev


def random_pg_batch(rng: random.Random) -> dict[str, Grid | list[float]]:
    rows, cols = rng.randint(1, 6), rng.randint(2, 8)
    token_mask = [[float(t > 0 and rng.random() < 0.75) for t in range(cols)] for _ in range(rows)]
    if rows > 1 and rng.random() < 0.3:
        token_mask[rng.randrange(rows)] = [0.0] * cols  # a row without response tokens
    spread = rng.choice([0.05, 0.3, 1.0])
    prev = [[-rng.uniform(0.05, 3.0) for _ in range(cols)] for _ in range(rows)]
    current = [[p + rng.gauss(0, spread) for p in row] for row in prev]
    per_row = rng.random() < 0.5
    advantages = []
    for _ in range(rows):
        a = rng.gauss(0, 1.5)
        advantages.append([a if per_row else rng.gauss(0, 1.5) for _ in range(cols)])
    return {
        "token_mask": token_mask,
        "sample_mask": [rng.choice([1.0, 1.0, 1.0, 0.5, 0.0]) for _ in range(rows)],
        "advantages": advantages,
        "prev_logprobs": prev,
        "current": current,
        "generation_logprobs": [[p + rng.gauss(0, 0.2) for p in row] for row in prev],
        "reference_logprobs": [[c + rng.choice([rng.gauss(0, 0.7), rng.uniform(-4, 4)]) for c in row] for row in current],
    }


def reference_pg(cfg: ClippedPGLossConfig, data: dict, has_prev: bool) -> tuple[dict[str, float], Grid]:
    """Loss, metrics and d loss / d log pi for ClippedPGLoss, one token at a time."""
    m, s, adv = data["token_mask"], data["sample_mask"], data["advantages"]
    cur, gen, ref = data["current"], data["generation_logprobs"], data["reference_logprobs"]
    rows, cols = len(m), len(m[0])
    # the "old" policy: prev_logprobs, or the (detached) current ones when forced / absent
    old = data["prev_logprobs"] if has_prev and not cfg.force_on_policy_ratio else cur
    n_tok = sum(s[b] * m[b][t] for b in range(rows) for t in range(cols))
    n_seq = sum(s)
    count = [sum(m[b]) for b in range(rows)]
    low, high = 1 - cfg.ratio_clip_min, 1 + cfg.ratio_clip_max

    # ratios r[b][t] and their derivative d r[b][t] / d cur[b][t'] (diagonal, or r / n_b for GSPO)
    ratio, ratio_clamped, loss_t, dloss_dr, clipped = (zeros(rows, cols) for _ in range(5))
    direct = zeros(rows, cols)  # d l / d cur[b][t] through paths other than the ratio (REINFORCE, CISPO)
    for b in range(rows):
        seq_ratio = 1.0
        if cfg.sequence_level_importance_ratios:
            mean = sum(cur[b][t] - old[b][t] for t in range(cols) if m[b][t]) / count[b] if count[b] else 0.0
            seq_ratio = math.exp(mean)
        for t in range(cols):
            if not m[b][t]:
                continue
            a = adv[b][t]
            if cfg.disable_ppo_ratio:
                loss_t[b][t], direct[b][t] = -a * cur[b][t], -a
                continue
            if cfg.force_on_policy_ratio:
                r = 1.0
            elif cfg.sequence_level_importance_ratios:
                r = seq_ratio
            else:
                r = math.exp(cur[b][t] - old[b][t])
            rc = min(high, max(low, r))
            ratio[b][t], ratio_clamped[b][t] = r, rc
            if cfg.use_cispo:
                loss_t[b][t], direct[b][t], clipped[b][t] = -a * rc * cur[b][t], -a * rc, float(r != rc)
                continue
            unclipped, clip_branch = -a * r, -a * rc
            if clip_branch > unclipped:
                loss_t[b][t], dloss_dr[b][t], clipped[b][t] = clip_branch, 0.0, 1.0
            else:
                loss_t[b][t], dloss_dr[b][t] = unclipped, -a
            if cfg.ratio_clip_c is not None and a < 0 and loss_t[b][t] > -cfg.ratio_clip_c * a:
                loss_t[b][t], dloss_dr[b][t], clipped[b][t] = -cfg.ratio_clip_c * a, 0.0, 1.0

    # importance weights (detached) and their truncation
    weight = [[math.exp(old[b][t] - gen[b][t]) for t in range(cols)] for b in range(rows)]
    if cfg.sequence_level_importance_ratios:
        weight = [[math.exp(sum(old[b][u] - gen[b][u] for u in range(cols) if m[b][u]))] * cols for b in range(rows)]
    out_of_bounds: list[Any] | None = None
    lo, hi = cfg.truncated_importance_sampling_ratio_min, cfg.truncated_importance_sampling_ratio_max
    if cfg.use_importance_sampling_correction and cfg.truncated_importance_sampling_type == "tis":
        out_of_bounds = [[float(not lo <= w <= hi) for w in row] for row in weight]
        weight = [[min(hi, max(lo, w)) for w in row] for row in weight]
    elif cfg.use_importance_sampling_correction and cfg.truncated_importance_sampling_type == "icepop":
        out_of_bounds = [[float(not lo <= w <= hi) for w in row] for row in weight]
        weight = [[w if lo <= w <= hi else 0.0 for w in row] for row in weight]
    elif cfg.use_importance_sampling_correction and cfg.truncated_importance_sampling_type == "seq-mask-tis":
        out_of_bounds = []
        for b in range(rows):
            mean = sum(old[b][t] - gen[b][t] for t in range(cols) if m[b][t]) / count[b] if count[b] else 0.0
            kept = lo <= math.exp(mean) <= hi
            out_of_bounds.append(float(not kept))
            weight[b] = [w if kept else 0.0 for w in weight[b]]
    applied = weight if cfg.use_importance_sampling_correction else [[1.0] * cols for _ in range(rows)]

    def token_share(b: int, t: int) -> float:
        """d(reduced loss) / d(per-token value at b, t) for the configured reduction."""
        if not m[b][t]:
            return 0.0
        if cfg.reduction == "token_mean":
            return s[b] / n_tok if n_tok else 0.0
        if cfg.reduction == "seq_sum_constant":
            return s[b] / cfg.loss_reduction_constant / n_seq if n_seq else 0.0
        return s[b] / count[b] / n_seq if n_seq else 0.0

    grad = zeros(rows, cols)
    pg = 0.0
    for b in range(rows):
        for t in range(cols):
            share = token_share(b, t)
            pg += share * applied[b][t] * loss_t[b][t]
            grad[b][t] += share * applied[b][t] * direct[b][t]
            if dloss_dr[b][t] == 0.0:
                continue
            if cfg.sequence_level_importance_ratios:
                for u in range(cols):  # the shared ratio moves with every token of the row
                    if m[b][u]:
                        grad[b][u] += share * applied[b][t] * dloss_dr[b][t] * ratio[b][t] / count[b]
            else:
                grad[b][t] += share * applied[b][t] * dloss_dr[b][t] * ratio[b][t]

    beta = cfg.reference_policy_kl_penalty
    kl_term = 0.0
    if beta > 0:
        for b in range(rows):
            for t in range(cols):
                if not m[b][t]:
                    continue
                w = math.exp(cur[b][t] - gen[b][t]) if cfg.use_on_policy_kl_approximation else 1.0
                value, dvalue = reference_kl(
                    cur[b][t], ref[b][t], cfg.reference_policy_kl_type, cfg.kl_input_clamp_value, cfg.kl_output_clamp_value, w
                )
                kl_term += token_share(b, t) * value
                grad[b][t] += beta * token_share(b, t) * dvalue

    def token_mean(values: Grid) -> float:
        return sum(s[b] * m[b][t] * values[b][t] for b in range(rows) for t in range(cols)) / n_tok if n_tok else 0.0

    metrics = {"loss": pg + beta * kl_term, "pg_loss": pg, "num_valid_samples": n_seq}
    if beta > 0:
        metrics["kl_penalty"] = kl_term
    if not cfg.disable_ppo_ratio:
        metrics.update(
            probs_ratio=token_mean(ratio), probs_ratio_clamped=token_mean(ratio_clamped), clip_fraction=token_mean(clipped)
        )
    metrics["is_weight"] = token_mean(weight)  # truncated when the correction is on, else as measured
    if out_of_bounds is not None:
        if cfg.truncated_importance_sampling_type == "seq-mask-tis":
            metrics["is_oob_ratio"] = sum(s[b] * out_of_bounds[b] for b in range(rows)) / n_seq if n_seq else 0.0
        else:
            metrics["is_oob_ratio"] = token_mean(out_of_bounds)
    metrics["token_mult_prob_error"] = token_mean([[math.exp(abs(old[b][t] - gen[b][t])) for t in range(cols)] for b in range(rows)])
    metrics["approx_entropy"] = token_mean([[-math.exp(cur[b][t] - gen[b][t]) * cur[b][t] for t in range(cols)] for b in range(rows)])
    return metrics, grad


def assert_matches_reference(config: Any, data: dict[str, Any], has_prev: bool, where: str) -> tuple[torch.Tensor, dict[str, float], dict[str, float]]:
    """Run ClippedPGLoss on `data` in float64; every reference metric and the gradient must match. Returns
    (loss, expected metrics, metrics) for the caller's own checks."""
    tensors = {key: torch.tensor(value, dtype=torch.float64) for key, value in data.items() if key != "current"}
    if not has_prev:
        del tensors["prev_logprobs"]
    logprobs = torch.tensor(data["current"], dtype=torch.float64, requires_grad=True)
    tokens = (tensors["token_mask"] * tensors["sample_mask"][:, None]).sum()
    loss, metrics = ClippedPGLoss(config)(logprobs, tensors, tokens, tensors["sample_mask"].sum())
    loss.backward()
    expected, expected_grad = reference_pg(config, data, has_prev)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=TOLERANCE, rel=TOLERANCE), f"{key} in {where}"
    torch.testing.assert_close(
        logprobs.grad, torch.tensor(expected_grad, dtype=torch.float64), atol=TOLERANCE, rtol=TOLERANCE, msg=where
    )
    return loss, expected, metrics


def test_clipped_pg_loss_matches_reference_on_random_batches_and_configs() -> None:
    rng = random.Random(2024)
    seen: set[str] = set()
    for case in range(600):
        config, has_prev = random_pg_config(rng)
        where = f"case {case}: {config}"
        loss, expected, metrics = assert_matches_reference(config, random_pg_batch(rng), has_prev, where)
        assert loss.item() == pytest.approx(expected["loss"], abs=TOLERANCE, rel=TOLERANCE), where
        if config.disable_ppo_ratio:
            assert "probs_ratio" not in metrics
        seen.update(
            name
            for name in ("use_cispo", "disable_ppo_ratio", "force_on_policy_ratio", "sequence_level_importance_ratios",
                         "use_on_policy_kl_approximation", "use_importance_sampling_correction")
            if getattr(config, name)
        )
        seen.add(f"tis:{config.truncated_importance_sampling_type}")
        seen.add(f"kl:{config.reference_policy_kl_type}" if config.reference_policy_kl_penalty else "kl:off")
        seen.add(f"dual:{config.ratio_clip_c is not None}")
    # every option was drawn (the generator is seeded, so this documents coverage rather than guards luck)
    assert {"use_cispo", "disable_ppo_ratio", "force_on_policy_ratio", "sequence_level_importance_ratios",
            "use_on_policy_kl_approximation", "tis:tis", "tis:icepop", "tis:seq-mask-tis", "kl:k1", "kl:k2", "kl:k3",
            "dual:True"} <= seen


def test_every_loss_reduction_matches_reference_on_random_batches_and_configs() -> None:
    """`loss_fn.loss_reduction` (seq_sum_constant above all) under every loss variant, against the same reference."""
    rng = random.Random(26)
    seen: set[str] = set()
    for case in range(300):
        config, has_prev = random_pg_config(rng)
        allowed = ["token_mean"] if config.use_cispo else ["seq_mean_token_mean", "seq_sum_constant"]
        if not (config.use_cispo or config.sequence_level_importance_ratios):
            allowed.append("token_mean")
        reduction = rng.choice(allowed)
        constant = rng.choice([1.0, 3.0, 12.5]) if reduction == "seq_sum_constant" else None
        spelled_out = reduction == "seq_mean_token_mean" and rng.random() < 0.5  # token_level_loss=false agrees with it
        config = attrs.evolve(
            config, token_level_loss=not spelled_out, loss_reduction=reduction, loss_reduction_constant=constant
        )
        seen.add(reduction)
        assert_matches_reference(config, random_pg_batch(rng), has_prev, f"case {case}: {config}")
    assert seen == {"token_mean", "seq_mean_token_mean", "seq_sum_constant"}


def test_current_as_previous_equals_a_previous_pass_that_scored_the_current_weights() -> None:
    """`with_current_as_previous()` (GRPO's skipped pass) = the reference loss with log pi_old = log pi_theta.

    For every loss variant; and the loss then ignores any `prev_logprobs` the batch still carries.
    """
    rng = random.Random(77)
    for case in range(400):
        config, _ = random_pg_config(rng)
        data = random_pg_batch(rng)
        tensors = {key: torch.tensor(value, dtype=torch.float64) for key, value in data.items() if key != "current"}
        if rng.random() < 0.5:
            del tensors["prev_logprobs"]  # GRPO leaves it out; a stale column, if present, must not be read
        logprobs = torch.tensor(data["current"], dtype=torch.float64, requires_grad=True)
        tokens = (tensors["token_mask"] * tensors["sample_mask"][:, None]).sum()
        loss_fn = ClippedPGLoss(config).with_current_as_previous()
        loss, metrics = loss_fn(logprobs, tensors, tokens, tensors["sample_mask"].sum())
        loss.backward()
        expected, expected_grad = reference_pg(config, data, has_prev=False)  # old = current
        where = f"case {case}: {config}"
        assert loss.item() == pytest.approx(expected["loss"], abs=TOLERANCE, rel=TOLERANCE), where
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value, abs=TOLERANCE, rel=TOLERANCE), f"{key} in {where}"
        if not config.disable_ppo_ratio and tokens > 0:  # without valid tokens min/max read +-inf
            assert metrics["probs_ratio_min"] == 1.0 and metrics["probs_ratio_max"] == 1.0, where
        torch.testing.assert_close(
            logprobs.grad, torch.tensor(expected_grad, dtype=torch.float64), atol=TOLERANCE, rtol=TOLERANCE, msg=where
        )
    assert ClippedPGLoss().current_as_previous is False  # only the copy changes


# ------------------------------------------------------------------------- NLL and DPO
def test_nll_loss_matches_reference_on_random_batches() -> None:
    rng = random.Random(7)
    for case in range(300):
        rows, cols = rng.randint(1, 6), rng.randint(1, 8)
        mask = [[float(rng.random() < 0.7) for _ in range(cols)] for _ in range(rows)]
        weights = [rng.choice([1.0, 0.0, 0.5]) for _ in range(rows)]
        values = [[-rng.uniform(0, 8) for _ in range(cols)] for _ in range(rows)]
        tokens = sum(weights[b] * mask[b][t] for b in range(rows) for t in range(cols))
        batch = {"token_mask": torch.tensor(mask, dtype=torch.float64), "sample_mask": torch.tensor(weights, dtype=torch.float64)}
        logprobs = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        loss, metrics = NLLLoss()(logprobs, batch, torch.tensor(tokens, dtype=torch.float64), torch.tensor(sum(weights)))
        loss.backward()
        expected = -sum(weights[b] * mask[b][t] * values[b][t] for b in range(rows) for t in range(cols)) / tokens if tokens else 0.0
        assert loss.item() == pytest.approx(expected, abs=TOLERANCE, rel=TOLERANCE), case
        assert metrics["num_valid_samples"] == sum(weights)
        grad = [[-weights[b] * mask[b][t] / tokens if tokens else 0.0 for t in range(cols)] for b in range(rows)]
        torch.testing.assert_close(logprobs.grad, torch.tensor(grad, dtype=torch.float64), atol=TOLERANCE, rtol=TOLERANCE)


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def test_dpo_loss_matches_reference_on_random_pairs_and_configs() -> None:
    rng = random.Random(11)
    for case in range(300):
        config = DPOLossConfig(
            reference_policy_kl_penalty=rng.choice([0.0, rng.uniform(0.01, 2.0)]),
            preference_loss_weight=rng.choice([1.0, rng.uniform(0.1, 2.0)]),
            sft_loss_weight=rng.choice([0.0, rng.uniform(0.0, 1.0)]),
            preference_average_log_probs=rng.random() < 0.5,
            sft_average_log_probs=rng.random() < 0.5,
        )
        pairs, cols = rng.randint(1, 4), rng.randint(1, 7)
        rows = 2 * pairs
        mask = [[float(rng.random() < 0.7) for _ in range(cols)] for _ in range(rows)]
        pair_mask = [rng.choice([1.0, 1.0, 0.0]) for _ in range(pairs)]
        weights = [pair_mask[p // 2] for p in range(rows)]
        current = [[-rng.uniform(0, 5) for _ in range(cols)] for _ in range(rows)]
        reference = [[c + rng.gauss(0, rng.choice([0.1, 2.0])) for c in row] for row in current]
        batch = {
            "token_mask": torch.tensor(mask, dtype=torch.float64),
            "sample_mask": torch.tensor(weights, dtype=torch.float64),
            "reference_logprobs": torch.tensor(reference, dtype=torch.float64),
        }
        logprobs = torch.tensor(current, dtype=torch.float64, requires_grad=True)
        loss, metrics = DPOLoss(config)(logprobs, batch, torch.tensor(0.0), torch.tensor(sum(weights), dtype=torch.float64))
        loss.backward()

        beta, n_pairs = config.reference_policy_kl_penalty, sum(weights) / 2
        count = [sum(row) for row in mask]
        log_ratio = [sum(mask[b][t] * (current[b][t] - reference[b][t]) for t in range(cols)) for b in range(rows)]
        pref_scale = [1 / count[b] if config.preference_average_log_probs and count[b] else 1.0 for b in range(rows)]
        sft_scale = [1 / count[b] if config.sft_average_log_probs and count[b] else 1.0 for b in range(rows)]
        if config.preference_average_log_probs:
            log_ratio = [log_ratio[b] * pref_scale[b] for b in range(rows)]
        total = preference = sft = accuracy = chosen_mean = rejected_mean = 0.0
        grad = zeros(rows, cols)
        for p in range(pairs):
            c, r, w = 2 * p, 2 * p + 1, pair_mask[p]
            margin = beta * (log_ratio[c] - log_ratio[r])
            nll = -sum(mask[c][t] * current[c][t] for t in range(cols)) * sft_scale[c]
            preference += w * softplus(-margin) / n_pairs if n_pairs else 0.0
            sft += w * nll / n_pairs if n_pairs else 0.0
            accuracy += w * float(log_ratio[c] > log_ratio[r]) / n_pairs if n_pairs else 0.0
            chosen_mean += w * log_ratio[c] / n_pairs if n_pairs else 0.0
            rejected_mean += weights[r] * log_ratio[r] / n_pairs if n_pairs else 0.0
            if not n_pairs:
                continue
            slope = config.preference_loss_weight * w / n_pairs * -beta * sigmoid(-margin)  # d/d r_chosen
            for t in range(cols):
                grad[c][t] = mask[c][t] * (slope * pref_scale[c] - config.sft_loss_weight * w / n_pairs * sft_scale[c])
                grad[r][t] = mask[r][t] * -slope * pref_scale[r]
        total = config.preference_loss_weight * preference + config.sft_loss_weight * sft
        where = f"case {case}: {config}"
        assert loss.item() == pytest.approx(total, abs=TOLERANCE, rel=TOLERANCE), where
        assert metrics["preference_loss"] == pytest.approx(preference, abs=TOLERANCE, rel=TOLERANCE), where
        assert metrics["sft_loss"] == pytest.approx(sft, abs=TOLERANCE, rel=TOLERANCE), where
        assert metrics["accuracy"] == pytest.approx(accuracy, abs=TOLERANCE), where
        assert metrics["rewards_chosen_mean"] == pytest.approx(chosen_mean, abs=TOLERANCE, rel=TOLERANCE), where
        assert metrics["rewards_rejected_mean"] == pytest.approx(rejected_mean, abs=TOLERANCE, rel=TOLERANCE), where
        assert metrics["num_valid_samples"] == n_pairs
        torch.testing.assert_close(logprobs.grad, torch.tensor(grad, dtype=torch.float64), atol=TOLERANCE, rtol=TOLERANCE, msg=where)
