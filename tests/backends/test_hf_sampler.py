"""The `hf` backend's own sampler: filters against a float64 reference and transformers' warpers, draws by hand
and by counting, and the backend's first tokens against the model's filtered distribution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TopKLogitsWarper, TopPLogitsWarper

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.generation.hf.sampler import TokenSampler, filtered_logits, inverse_cdf_sample
from reinforge.core.batch import Batch
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.models.tiny_model import build_model


def reference_top_k(logits: np.ndarray, top_k: int | None) -> np.ndarray:
    """Tokens at or above the k-th largest logit (ties with it kept), per row, in float64."""
    if not top_k:
        return np.ones(logits.shape, dtype=bool)
    kth = np.sort(logits, axis=1)[:, ::-1][:, min(top_k, logits.shape[1]) - 1 : min(top_k, logits.shape[1])]
    return logits >= kth


def check_nucleus(logits: np.ndarray, pool: np.ndarray, kept: np.ndarray, top_p: float, slack: float) -> str | None:
    """Why `kept` is not a top-p nucleus of the `pool` tokens of one row (None when it is).

    The nucleus is the shortest run of the most likely tokens whose mass reaches top_p: every kept
    token is at least as likely as every dropped one, the tokens before the last kept one hold less
    than top_p, and with it they reach top_p (or the pool is exhausted). Tied tokens at the edge may
    be split either way, as a sort orders them.
    """
    values = logits.astype(np.float64)
    if not kept.any() or (kept & ~pool).any():
        return "empty, or outside the top-k pool"
    dropped = pool & ~kept
    if dropped.any() and values[kept].min() < values[dropped].max():
        return "a dropped token is more likely than a kept one"
    probs = np.exp(np.where(pool, values, -np.inf) - values[pool].max())
    probs /= probs.sum()
    ordered = np.sort(probs[pool])[::-1]
    m = int(kept.sum())
    if top_p >= 1.0:
        return None if m == int(pool.sum()) else "top_p = 1 dropped a token"
    if ordered[: m - 1].sum() >= top_p + slack:
        return f"the {m - 1} tokens before the last kept one already hold {ordered[: m - 1].sum()} >= {top_p}"
    if m < len(ordered) and ordered[:m].sum() < top_p - slack:
        return f"the {m} kept tokens hold {ordered[:m].sum()} < {top_p}"
    return None


def random_case(rng: np.random.Generator) -> tuple[torch.Tensor, int | None, float]:
    rows, vocab = int(rng.integers(1, 5)), int(rng.integers(2, 300))
    scale = float(rng.choice([0.1, 1.0, 5.0]))
    logits = rng.normal(0, scale, (rows, vocab))
    if rng.random() < 0.3:  # ties, as low-precision logits have
        logits = np.round(logits, 1)
    top_k = None if rng.random() < 0.3 else int(rng.integers(1, vocab + 3))
    top_p = 1.0 if rng.random() < 0.3 else float(rng.uniform(0.05, 1.0))
    return torch.tensor(logits, dtype=torch.float32), top_k, top_p


def test_filters_are_top_k_then_the_nucleus_on_300_random_cases() -> None:
    """Against a float64 reference: top-k keeps ties with the k-th; then the shortest top run reaching top_p."""
    rng = np.random.default_rng(0)
    for case in range(300):
        logits, top_k, top_p = random_case(rng)
        kept = torch.isfinite(filtered_logits(logits, top_k, top_p)).numpy()
        pools = reference_top_k(logits.numpy().astype(np.float64), top_k)
        for row in range(len(logits)):
            problem = check_nucleus(logits[row].numpy(), pools[row], kept[row], top_p, slack=1e-9)
            assert problem is None, f"case {case} row {row} (top_k={top_k}, top_p={top_p}): {problem}"


def test_filters_match_transformers_warpers_on_200_random_cases() -> None:
    """Same kept set as TopKLogitsWarper then TopPLogitsWarper where no two logits tie (ties: either split)."""
    rng = np.random.default_rng(1)
    compared = 0
    for case in range(200):
        logits, top_k, top_p = random_case(rng)
        theirs = logits.clone()
        if top_k:
            theirs = TopKLogitsWarper(top_k)(None, theirs)
        if top_p < 1.0:
            theirs = TopPLogitsWarper(top_p)(None, theirs)
        ours = filtered_logits(logits, top_k, top_p)
        torch.testing.assert_close(ours[torch.isfinite(ours)], logits[torch.isfinite(ours)])
        for row in range(len(logits)):
            if len(set(logits[row].tolist())) < logits.shape[1]:
                continue
            compared += 1
            same = torch.isfinite(ours[row]) == torch.isfinite(theirs[row])
            if not same.all():  # transformers' float32 cumsum may land the edge on the other side of top_p
                probs = torch.softmax(torch.where(torch.isfinite(ours[row]) | torch.isfinite(theirs[row]), logits[row], -math.inf).double(), -1)
                masses = torch.cumsum(torch.sort(probs, descending=True).values, -1)
                assert (masses - top_p).abs().min() < 1e-6, f"case {case}: top_k={top_k} top_p={top_p}"
    assert compared > 200


def test_top_p_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filtered_logits(logits, None, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filtered_logits(logits, None, 0.51)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filtered_logits(logits, None, 0.9)).tolist() == [[True, True, True, False]]  # 0.95 ahead of 0.05
    assert torch.isfinite(filtered_logits(logits, None, 0.96)).tolist() == [[True, True, True, True]]
    assert torch.isfinite(filtered_logits(logits, 2, 1.0)).tolist() == [[True, True, False, False]]
    # top_k first: the nucleus is taken over the renormalised top 2 (0.625, 0.375).
    assert torch.isfinite(filtered_logits(logits, 2, 0.6)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filtered_logits(logits, 2, 0.63)).tolist() == [[True, True, False, False]]


def test_inverse_cdf_by_hand() -> None:
    """probs (0.5, 0, 0.25, 0.25): cdf (0.5, 0.5, 0.75, 1); token = first cdf entry strictly above u."""
    logits = torch.log(torch.tensor([[0.5, 0.0, 0.25, 0.25]])).repeat(6, 1)
    generator = torch.Generator().manual_seed(4)
    u = torch.rand((6, 1), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = [[0 if x < 0.5 else 2 if x < 0.75 else 3] for x in u.flatten().tolist()]
    assert inverse_cdf_sample(logits, generator).tolist() == expected


def test_draw_frequencies_match_the_distribution() -> None:
    """200k draws from a 6-token distribution with a zero and a tiny entry: each count within 5 sigma."""
    probs = torch.tensor([0.4, 0.0, 0.3, 0.2, 0.0999, 0.0001], dtype=torch.float64)
    draws = 200_000
    logits = torch.log(probs).float().expand(draws, -1)
    tokens = inverse_cdf_sample(logits, torch.Generator().manual_seed(0)).flatten()
    counts = torch.bincount(tokens, minlength=6).double()
    assert counts[1] == 0, "a zero-probability token was drawn"
    sigma = (draws * probs * (1 - probs)).sqrt()
    assert ((counts - draws * probs).abs() <= 5 * sigma + 1).all(), f"counts {counts.tolist()}"


def test_a_row_of_minus_inf_but_one_always_draws_that_one() -> None:
    logits = torch.full((1000, 50), -math.inf)
    logits[:, 37] = 3.0
    assert (inverse_cdf_sample(logits, torch.Generator().manual_seed(0)) == 37).all()


def test_sampler_scores_make_argmax_the_draw() -> None:
    scores = torch.randn(8, 30)
    sampler = TokenSampler(0.7, 5, 0.9, torch.Generator().manual_seed(3))
    out = sampler(torch.zeros(8, 2, dtype=torch.long), scores)
    drawn = out.argmax(-1)
    assert (out == 0).sum(-1).tolist() == [1] * 8 and torch.isinf(out).sum(-1).tolist() == [29] * 8
    allowed = torch.isfinite(filtered_logits(scores / 0.7, 5, 0.9))
    assert allowed.gather(1, drawn[:, None]).all()
    with pytest.raises(ValueError, match="temperature > 0"):
        TokenSampler(0.0, None, 1.0, torch.Generator())


# -------------------------------------------------------------------------- through the backend
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf-sampler") / "model", size="tiny", seed=0)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, None, 1.0), (0.6, 12, 0.8)])
def test_first_tokens_follow_the_models_filtered_distribution(
    model_dir: Path, temperature: float, top_k: int | None, top_p: float
) -> None:
    """4000 samples of one prompt's first token against softmax(filter(logits) / T) of a separate forward."""
    from transformers import AutoModelForCausalLM

    backend = HFGenerationBackend(
        PolicyConfig(model_name=str(model_dir), max_total_sequence_length=64),
        HFGenerationConfig(device="cpu", max_batch_size=None),
    )
    prompt = backend.tokenizer("What is 2 + 2?", add_special_tokens=False)["input_ids"]
    samples = 4000
    sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=1, n=samples, seed=9)
    out = backend.generate(Batch.from_sequences([prompt], backend.pad_token_id), sampling)
    backend.shutdown()
    first = out["output_ids"][:, len(prompt)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[:, -1].double() / temperature  # [1, V]
    pool = reference_top_k(logits.numpy(), top_k)[0]
    ordered = np.sort(logits.numpy()[0][pool])[::-1]
    probs_pool = np.exp(ordered - ordered[0]) / np.exp(ordered - ordered[0]).sum()
    m = int(np.searchsorted(np.cumsum(probs_pool) - probs_pool, top_p, side="left")) if top_p < 1 else len(ordered)
    keep = torch.tensor(pool & (logits.numpy()[0] >= ordered[m - 1]))[None]  # the model's logits do not tie here
    probs = torch.softmax(torch.where(keep, logits, -math.inf), -1).flatten()
    counts = torch.bincount(first, minlength=probs.numel()).double()
    assert counts[~keep.flatten()].sum() == 0, "a filtered-out token was drawn"
    sigma = (samples * probs * (1 - probs)).sqrt()
    assert ((counts - samples * probs).abs() <= 5 * sigma + 1).all()
