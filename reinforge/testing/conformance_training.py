"""Conformance tests that any `TrainingBackend` plugin runs against itself.

Why: the algorithms only know the `TrainingBackend` protocol; these tests pin down the behaviour
they rely on (global loss normalisation, logprob alignment, refit buckets, checkpoints), so a
third-party backend that passes them can replace `dtensor` without touching an algorithm.
They run in one process on the kit's tiny model, in float32, in a few seconds each.

Use from a plugin's test module:

    from reinforge.testing.conformance_training import *  # noqa: F403 (the test_* functions and fixtures)

    @pytest.fixture
    def training_backend_factory():
        def make(policy: PolicyConfig, *, need_reference: bool = False) -> TrainingBackend:
            return MyBackend(policy, MyOptions(), need_reference=need_reference)
        return make

Override `conformance_model_dir` to test another (small, float32) Hugging Face model folder.

A backend that trains LoRA adapters (registered with `Capabilities(lora=True)`) overrides the
`conformance_lora` fixture to return True; the `test_lora_*` tests then build it with `policy.lora`
and check that it starts at the base, keeps the base as the reference, sends merged weights under
the base's names, and checkpoints (and resumes) the adapters alone. Otherwise they are skipped.

Two tests (marked `distributed`) run the backend on 2 data-parallel ranks in 2 processes
(`reinforge.testing.two_ranks`): the factory must then be picklable by cloudpickle (a closure over
importable classes and plain options is), and whatever the backend needs in a fresh process
(e.g. a test shim) must happen inside the factory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import TrainingBackend
from reinforge.core.lora_config import LoRAConfig
from reinforge.core.run_config import OptimizerConfig, PolicyConfig, SchedulerConfig

BackendFactory = Callable[..., TrainingBackend]  # (policy, *, need_reference=False) -> backend
REQUIRED_METRICS = ("loss", "grad_norm", "lr", "tokens", "microbatches")

__all__ = [
    "REQUIRED_METRICS",
    "ConformanceNLLLoss",
    "conformance_batch",
    "conformance_data_parallel",
    "conformance_lora",
    "conformance_model_dir",
    "make_training_backend",
    "naive_logprobs",
    "test_empty_batch_raises",
    "test_export_hf_loads_with_the_same_logprobs",
    "test_logprobs_are_aligned_padded_and_match_hugging_face",
    "test_lora_checkpoint_is_small_and_resumes_identically",
    "test_lora_named_weights_keep_the_base_names_and_shapes",
    "test_lora_start_is_the_base_and_the_reference_stays_the_base",
    "test_lora_two_data_parallel_ranks_match_one_and_save_one_checkpoint",
    "test_loss_decreases_on_a_fixed_batch",
    "test_microbatch_split_does_not_change_the_update",
    "test_named_weights_cover_the_model_in_bounded_buckets",
    "test_non_finite_loss_raises_and_leaves_weights_unchanged",
    "test_reference_logprobs_are_unchanged_by_training",
    "test_save_load_round_trip_continues_identically",
    "test_too_long_sequence_raises",
    "test_train_returns_required_metrics",
    "test_two_data_parallel_ranks_match_one_and_save_one_checkpoint",
    "weights",
]


# --------------------------------------------------------------------------- helpers
class ConformanceNLLLoss:
    """A `LossFn`: -sum(m * logprobs) / global valid tokens, with metrics of each reduction kind.

    `rows` and `loss` are summed over microbatches; `token_logprob_min` / `_max` are reduced by
    min / max, so a backend that aggregates correctly reports the batch's extreme logprobs.
    """

    def __call__(
        self,
        logprobs: torch.Tensor,  # [B, T]
        batch: Batch,
        global_valid_tokens: torch.Tensor,  # scalar
        global_valid_seqs: torch.Tensor,  # scalar
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mask = batch["token_mask"].to(logprobs.dtype) * batch["sample_mask"].to(logprobs.dtype)[:, None]  # [B, T]
        loss = -(logprobs * mask).sum() / global_valid_tokens
        valid = logprobs.detach()[mask > 0]
        return loss, {
            "loss": loss.item(),
            "rows": float(len(batch)),
            "token_logprob_min": valid.min().item() if valid.numel() else math.inf,
            "token_logprob_max": valid.max().item() if valid.numel() else -math.inf,
        }


def conformance_batch(vocab_size: int, *, rows: int = 8, width: int = 24, seed: int = 0) -> Batch:
    """Right-padded random sequences of different lengths, a 3-5 token prompt each, one row with sample_mask 0."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(width // 3, width + 1, (rows,), generator=generator)  # [B]
    lengths[-1] = width  # one full row, so the batch is exactly `width` wide
    positions = torch.arange(width)  # [T]
    inside = positions[None, :] < lengths[:, None]  # [B, T]
    ids = torch.randint(3, vocab_size, (rows, width), generator=generator)  # [B, T]
    input_ids = torch.where(inside, ids, torch.zeros_like(ids))  # pad id 0
    prompt = torch.randint(3, 6, (rows,), generator=generator)  # [B]
    token_mask = (inside & (positions[None, :] >= prompt[:, None])).float()  # [B, T]
    sample_mask = torch.ones(rows)
    sample_mask[rows // 2] = 0.0
    return Batch(input_ids=input_ids, input_lengths=lengths, token_mask=token_mask, sample_mask=sample_mask)


def grouped_batch(vocab_size: int, *, prompts: int = 4, group: int = 3, seed: int = 0) -> Batch:
    """GRPO-like rows: `group` responses per prompt, adjacent; prompts of 2-8 tokens, responses of 0-11
    (a row without response tokens has no token_mask), the second row with sample_mask 0."""
    generator = torch.Generator().manual_seed(seed)
    pieces = []
    for _ in range(prompts):
        prompt = torch.randint(3, vocab_size, (int(torch.randint(2, 9, (1,), generator=generator)),), generator=generator)
        for _ in range(group):
            response = torch.randint(3, vocab_size, (int(torch.randint(0, 12, (1,), generator=generator)),), generator=generator)
            pieces.append((prompt, response))
    width = max(len(p) + len(r) for p, r in pieces) + 2  # all-padding columns, as rollouts have
    input_ids = torch.zeros(len(pieces), width, dtype=torch.long)  # [B, T], pad id 0
    token_mask = torch.zeros(len(pieces), width)  # [B, T]
    for row, (prompt, response) in enumerate(pieces):
        input_ids[row, : len(prompt) + len(response)] = torch.cat([prompt, response])
        token_mask[row, len(prompt) : len(prompt) + len(response)] = 1.0
    sample_mask = torch.ones(len(pieces))
    sample_mask[min(1, len(pieces) - 1)] = 0.0
    lengths = torch.tensor([len(p) + len(r) for p, r in pieces])
    return Batch(input_ids=input_ids, input_lengths=lengths, token_mask=token_mask, sample_mask=sample_mask)


def naive_logprobs(model: Any, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """The reference computation from a Hugging Face model: full logits, log-softmax, gather. `# [B, T]`."""
    input_ids, lengths = batch["input_ids"], batch["input_lengths"]
    width = input_ids.shape[1]
    mask = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=mask.long()).logits.float() / temperature  # [B, T, V]
    picked = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    out = torch.cat([torch.zeros(len(input_ids), 1), picked], dim=1)  # [B, T]
    return torch.where(mask, out, torch.zeros_like(out))


def weights(backend: TrainingBackend) -> dict[str, torch.Tensor]:
    """Every tensor `named_weights` yields, copied to the CPU in float32."""
    return {name: t.detach().float().cpu().clone() for bucket in backend.named_weights(2**20) for name, t in bucket}


def _assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by up to {worst} (tolerance {atol})"


def _hf_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


_POLICY_DEFAULTS: dict[str, Any] = {
    "precision": "float32",
    "train_global_batch_size": 8,
    "train_micro_batch_size": 2,
    "logprob_batch_size": 3,
    "max_total_sequence_length": 64,
    "max_grad_norm": None,
    "optimizer": OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.0),
}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def conformance_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit's tiny Qwen2 (float32); override to run the suite on another small model folder."""
    from reinforge.models.tiny_model import build_model

    return build_model(tmp_path_factory.mktemp("conformance") / "model", size="tiny", seed=0)


@pytest.fixture
def conformance_data_parallel() -> bool:
    """Whether the backend shards batches over data-parallel ranks; override with False (as `reinforge plugins
    check` does for a backend registered with `Capabilities(data_parallel=False)`) to skip the 2-rank test."""
    return True


@pytest.fixture
def conformance_lora() -> bool:
    """Whether the backend trains LoRA adapters (`Capabilities(lora=True)`); override with True to run the LoRA tests."""
    return False


@pytest.fixture
def make_training_backend(
    training_backend_factory: BackendFactory, conformance_model_dir: Path
) -> Iterator[Callable[..., TrainingBackend]]:
    """`make(need_reference=False, **policy_fields)`: a backend on the conformance model, shut down after the test."""
    made: list[TrainingBackend] = []

    def make(*, need_reference: bool = False, **fields: Any) -> TrainingBackend:
        backend = training_backend_factory(_conformance_policy(conformance_model_dir, **fields), need_reference=need_reference)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.shutdown()


def _vocab(model_dir: Path) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_dir).vocab_size)


# --------------------------------------------------------------------------- the suite
def test_train_returns_required_metrics(make_training_backend, conformance_model_dir):
    backend = make_training_backend()
    batch = conformance_batch(_vocab(conformance_model_dir))
    before = backend.logprobs(batch)  # [B, T]
    metrics = backend.train(batch, ConformanceNLLLoss())
    assert set(REQUIRED_METRICS) <= metrics.keys()
    assert all(isinstance(metrics[k], float) and math.isfinite(metrics[k]) for k in REQUIRED_METRICS)
    counted = batch["token_mask"] * batch["sample_mask"][:, None]  # [B, T]
    assert metrics["tokens"] == counted.sum().item()
    assert metrics["microbatches"] == 4  # 8 rows / train_micro_batch_size 2
    assert metrics["lr"] == pytest.approx(1e-3)
    assert metrics["grad_norm"] > 0
    # The loss is normalised by the global token count: it is the full batch's mean NLL.
    assert metrics["loss"] == pytest.approx(-(before * counted).sum().item() / counted.sum().item(), abs=1e-5)
    assert metrics["rows"] == 8  # summed over microbatches
    valid = before[counted > 0]
    assert metrics["token_logprob_min"] == pytest.approx(valid.min().item(), abs=1e-5)
    assert metrics["token_logprob_max"] == pytest.approx(valid.max().item(), abs=1e-5)


def test_loss_decreases_on_a_fixed_batch(make_training_backend, conformance_model_dir):
    backend = make_training_backend(optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(conformance_model_dir))
    losses = [backend.train(batch, ConformanceNLLLoss())["loss"] for _ in range(4)]
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_microbatch_split_does_not_change_the_update(make_training_backend, conformance_model_dir):
    # SGD with lr 1: the weight change is the gradient itself, so 1e-6 on weights is 1e-6 on gradients.
    sgd = OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0)
    batch = conformance_batch(_vocab(conformance_model_dir))
    whole = make_training_backend(optimizer=sgd, train_micro_batch_size=8)
    split = make_training_backend(optimizer=sgd, train_micro_batch_size=2)
    m_whole, m_split = whole.train(batch, ConformanceNLLLoss()), split.train(batch, ConformanceNLLLoss())
    assert (m_whole["microbatches"], m_split["microbatches"]) == (1, 4)
    assert m_split["loss"] == pytest.approx(m_whole["loss"], abs=1e-6)
    assert m_split["grad_norm"] == pytest.approx(m_whole["grad_norm"], rel=1e-5)
    _assert_weights_close(weights(whole), weights(split), atol=1e-6)


def test_logprobs_are_aligned_padded_and_match_hugging_face(make_training_backend, conformance_model_dir):
    backend = make_training_backend()
    batch = conformance_batch(_vocab(conformance_model_dir))
    reference = _hf_model(conformance_model_dir)
    logprobs = backend.logprobs(batch)
    assert logprobs.shape == batch["input_ids"].shape and logprobs.dtype == torch.float32
    assert torch.all(logprobs[:, 0] == 0)
    padding = torch.arange(batch["input_ids"].shape[1])[None, :] >= batch["input_lengths"][:, None]
    assert torch.all(logprobs[padding] == 0) and padding.any()
    assert torch.all(logprobs[:, 1:][~padding[:, 1:]] < 0)
    torch.testing.assert_close(logprobs, naive_logprobs(reference, batch), atol=1e-5, rtol=0)
    hot = backend.logprobs(batch, temperature=2.0)
    torch.testing.assert_close(hot, naive_logprobs(reference, batch, temperature=2.0), atol=1e-5, rtol=0)


def test_reference_logprobs_are_unchanged_by_training(make_training_backend, conformance_model_dir):
    backend = make_training_backend(optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(conformance_model_dir))
    reference_before = backend.reference_logprobs(batch)
    torch.testing.assert_close(reference_before, backend.logprobs(batch), atol=1e-6, rtol=0)
    for _ in range(2):
        backend.train(batch, ConformanceNLLLoss())
    assert (backend.logprobs(batch) - reference_before).abs().max() > 1e-3  # the policy moved
    torch.testing.assert_close(backend.reference_logprobs(batch), reference_before, atol=1e-6, rtol=0)


def test_named_weights_cover_the_model_in_bounded_buckets(make_training_backend, conformance_model_dir):
    backend = make_training_backend()
    hf = _hf_model(conformance_model_dir)
    expected = hf.state_dict()
    limit = 64 * 1024
    buckets = list(backend.named_weights(limit))
    assert len(buckets) > 1
    for bucket in buckets:
        size = sum(t.numel() * t.element_size() for _, t in bucket)
        assert size <= limit or len(bucket) == 1, f"a bucket of {size} bytes holds {len(bucket)} tensors"
    got = {name: t for bucket in buckets for name, t in bucket}
    assert sum(len(b) for b in buckets) == len(got), "a name was sent twice"
    assert got.keys() <= expected.keys(), f"unknown names: {sorted(got.keys() - expected.keys())[:5]}"
    pointers = {t.data_ptr() for name, t in expected.items() if name in got}
    for name in expected.keys() - got.keys():  # only tied aliases of a sent tensor may be left out
        assert expected[name].data_ptr() in pointers, f"{name} is missing and is not tied to a sent tensor"
    for name, tensor in got.items():
        assert tuple(tensor.shape) == tuple(expected[name].shape)
        torch.testing.assert_close(tensor.float().cpu(), expected[name].float(), atol=0, rtol=0)


def test_save_load_round_trip_continues_identically(make_training_backend, conformance_model_dir, tmp_path):
    # Warmup makes the lr depend on the step count, and AdamW's moments on the optimizer state.
    fields = {
        "optimizer": OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        "scheduler": SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.25),
    }
    batch = conformance_batch(_vocab(conformance_model_dir))
    first = make_training_backend(**fields)
    first.train(batch, ConformanceNLLLoss())
    first.train(batch, ConformanceNLLLoss())
    first.save(str(tmp_path / "ckpt"))
    saved_logprobs = first.logprobs(batch)
    expected = first.train(batch, ConformanceNLLLoss())

    second = make_training_backend(**fields)
    second.load(str(tmp_path / "ckpt"))
    torch.testing.assert_close(second.logprobs(batch), saved_logprobs, atol=0, rtol=0)
    resumed = second.train(batch, ConformanceNLLLoss())
    assert resumed["lr"] == pytest.approx(expected["lr"]) and resumed["lr"] != pytest.approx(1e-2 * 0.25)
    assert resumed["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    _assert_weights_close(weights(first), weights(second), atol=1e-6)


def test_export_hf_loads_with_the_same_logprobs(make_training_backend, conformance_model_dir, tmp_path):
    from transformers import AutoTokenizer

    backend = make_training_backend(optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(conformance_model_dir))
    backend.train(batch, ConformanceNLLLoss())
    backend.export_hf(str(tmp_path / "hf"))
    exported = _hf_model(tmp_path / "hf")
    torch.testing.assert_close(naive_logprobs(exported, batch), backend.logprobs(batch), atol=1e-5, rtol=0)
    assert (tmp_path / "hf" / "generation_config.json").is_file()
    assert len(AutoTokenizer.from_pretrained(tmp_path / "hf")) == len(AutoTokenizer.from_pretrained(conformance_model_dir))


def test_empty_batch_raises(make_training_backend, conformance_model_dir):
    backend = make_training_backend()
    empty = conformance_batch(_vocab(conformance_model_dir)).select([])
    for call in (lambda b: backend.train(b, ConformanceNLLLoss()), backend.logprobs):
        for batch in (empty, Batch()):
            with pytest.raises(ReinforgeError, match="empty"):
                call(batch)


def test_too_long_sequence_raises(make_training_backend, conformance_model_dir):
    backend = make_training_backend(max_total_sequence_length=20)
    batch = conformance_batch(_vocab(conformance_model_dir), width=24)
    row = int(torch.nonzero(batch["input_lengths"] > 20)[0])
    with pytest.raises(ReinforgeError, match=rf"row {row}\b.*\b20\b"):
        backend.train(batch, ConformanceNLLLoss())
    with pytest.raises(ReinforgeError, match=rf"row {row}\b.*\b20\b"):
        backend.logprobs(batch)


@attrs.define
class _PoisonedLoss:
    """The conformance loss times NaN: a loss that blows up."""

    def __call__(self, logprobs, batch, global_valid_tokens, global_valid_seqs):  # noqa: ANN001, ANN204
        loss, metrics = ConformanceNLLLoss()(logprobs, batch, global_valid_tokens, global_valid_seqs)
        return loss * float("nan"), metrics


def test_non_finite_loss_raises_and_leaves_weights_unchanged(make_training_backend, conformance_model_dir):
    backend = make_training_backend()
    batch = conformance_batch(_vocab(conformance_model_dir))
    before = weights(backend)
    with pytest.raises(ReinforgeError, match="step 0"):
        backend.train(batch, _PoisonedLoss())
    _assert_weights_close(weights(backend), before, atol=0)
    metrics = backend.train(batch, ConformanceNLLLoss())  # the backend is still usable, and no stale gradient leaks in
    assert math.isfinite(metrics["loss"]) and metrics["lr"] == pytest.approx(1e-3)


@pytest.mark.distributed
def test_two_data_parallel_ranks_match_one_and_save_one_checkpoint(make_training_backend, training_backend_factory,
                                                                   conformance_model_dir, conformance_data_parallel,
                                                                   tmp_path):  # fmt: skip
    """2 gloo ranks, each on its half of the global batch: after a step both hold the same weights, equal to one
    process trained on the whole batch; the checkpoint both ranks saved is one checkpoint, which a single process
    loads (weights, optimizer and schedule state) and continues identically."""
    if not conformance_data_parallel:
        pytest.skip("the backend declares no data parallelism: the executors refuse to run it on 2 ranks")
    _check_two_ranks(make_training_backend, training_backend_factory, conformance_model_dir, tmp_path)


def _check_two_ranks(make_training_backend, training_backend_factory, model_dir: Path, tmp_path: Path, **extra: Any) -> None:  # noqa: ANN001
    pytest.importorskip("cloudpickle", reason="the 2-rank test sends the factory with cloudpickle: pip install 'reinforge[test]'")
    from reinforge.testing.two_ranks import run_two_ranks

    # Adam with eps 1 is smooth in the gradient (no sign-like first step that would amplify float noise),
    # yet its moments carry over: the step after the checkpoint, on another batch, depends on them, and the
    # warmup makes its lr depend on the restored step count.
    fields = {
        "optimizer": OptimizerConfig(name="adam", lr=0.05, weight_decay=0.0, eps=1.0),
        "scheduler": SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.25),
        **extra,
    }
    batch = conformance_batch(_vocab(model_dir), rows=8, seed=3)
    second_batch = conformance_batch(_vocab(model_dir), rows=8, seed=4)
    single = make_training_backend(**fields)
    initial = weights(single)
    ranks = run_two_ranks(
        {"factory": training_backend_factory, "policy": _conformance_policy(model_dir, **fields),
         "batch": batch, "second_batch": second_batch, "checkpoint_dir": str(tmp_path / "ckpt")},
        tmp_path,
    )  # fmt: skip

    expected_first = single.train(batch, ConformanceNLLLoss())
    expected_weights = weights(single)
    _assert_weights_close(ranks[0]["after_first"], ranks[1]["after_first"], atol=0.0)  # identical replicas
    _assert_weights_close(ranks[0]["after_first"], expected_weights, atol=1e-5)
    assert max((expected_weights[k] - initial[k]).abs().max().item() for k in initial) > 1e-3  # the step moved them
    for rank in ranks:  # metrics are the global batch's, whichever rank reports them
        assert rank["first"]["loss"] == pytest.approx(expected_first["loss"], abs=1e-5)
        assert rank["first"]["tokens"] == expected_first["tokens"]

    resumed = make_training_backend(**fields)
    resumed.load(str(tmp_path / "ckpt"))
    _assert_weights_close(weights(resumed), ranks[0]["after_first"], atol=1e-6)
    continued = resumed.train(second_batch, ConformanceNLLLoss())
    assert continued["lr"] == pytest.approx(ranks[0]["second"]["lr"]) and continued["lr"] != pytest.approx(expected_first["lr"])
    assert continued["loss"] == pytest.approx(ranks[0]["second"]["loss"], abs=1e-5)
    _assert_weights_close(ranks[0]["after_second"], ranks[1]["after_second"], atol=0.0)
    _assert_weights_close(weights(resumed), ranks[0]["after_second"], atol=1e-5)


# --------------------------------------------------------------------------- LoRA (backends with Capabilities(lora=True))
_LORA = LoRAConfig(enabled=True, dim=4, alpha=8.0)


def _require_lora(conformance_lora: bool) -> None:
    if not conformance_lora:
        pytest.skip("the backend declares no LoRA support (Capabilities(lora=False)): the executors refuse policy.lora")


def _checkpoint_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_lora_start_is_the_base_and_the_reference_stays_the_base(make_training_backend, conformance_model_dir, conformance_lora):
    _require_lora(conformance_lora)
    backend = make_training_backend(need_reference=True, lora=_LORA, optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(conformance_model_dir))
    base = naive_logprobs(_hf_model(conformance_model_dir), batch)
    start = backend.reference_logprobs(batch)
    assert torch.equal(backend.logprobs(batch), start)  # B = 0: the adapters add nothing, exactly
    torch.testing.assert_close(start, base, atol=1e-5, rtol=0)
    for _ in range(2):
        backend.train(batch, ConformanceNLLLoss())
    assert (backend.logprobs(batch) - start).abs().max() > 1e-3  # the policy moved
    assert torch.equal(backend.reference_logprobs(batch), start)  # the reference is still the base


def test_lora_named_weights_keep_the_base_names_and_shapes(make_training_backend, conformance_model_dir, conformance_lora):
    _require_lora(conformance_lora)
    backend = make_training_backend(lora=_LORA, optimizer=OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.0))
    batch = conformance_batch(_vocab(conformance_model_dir))
    backend.train(batch, ConformanceNLLLoss())
    expected = _hf_model(conformance_model_dir).state_dict()
    got = weights(backend)
    assert got.keys() <= expected.keys(), f"not Hugging Face names: {sorted(got.keys() - expected.keys())[:5]}"
    pointers = {t.data_ptr() for name, t in expected.items() if name in got}
    for name in expected.keys() - got.keys():  # only tied aliases of a sent tensor may be left out
        assert expected[name].data_ptr() in pointers, f"{name} is missing and is not tied to a sent tensor"
    moved = [name for name, tensor in got.items() if tuple(tensor.shape) == tuple(expected[name].shape)
             and not torch.equal(tensor, expected[name].float())]  # fmt: skip
    assert all(tuple(t.shape) == tuple(expected[n].shape) for n, t in got.items())
    assert moved and all(name.endswith("proj.weight") for name in moved), moved  # merged linear weights only


def test_lora_checkpoint_is_small_and_resumes_identically(make_training_backend, conformance_model_dir, conformance_lora, tmp_path):
    _require_lora(conformance_lora)
    fields = {
        "lora": _LORA,
        "optimizer": OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01),
        "scheduler": SchedulerConfig(name="linear_warmup", warmup_steps=4, warmup_start_factor=0.25),
    }
    batch = conformance_batch(_vocab(conformance_model_dir))
    first = make_training_backend(**fields)
    first.train(batch, ConformanceNLLLoss())
    first.save(str(tmp_path / "lora"))
    expected = first.train(batch, ConformanceNLLLoss())
    full = make_training_backend(optimizer=fields["optimizer"])
    full.train(batch, ConformanceNLLLoss())
    full.save(str(tmp_path / "full"))
    assert _checkpoint_bytes(tmp_path / "lora") < 0.25 * _checkpoint_bytes(tmp_path / "full")  # adapters, not the base

    second = make_training_backend(**fields)
    second.load(str(tmp_path / "lora"))
    resumed = second.train(batch, ConformanceNLLLoss())
    assert resumed["lr"] == pytest.approx(expected["lr"]) and resumed["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    _assert_weights_close(weights(first), weights(second), atol=1e-6)


@pytest.mark.distributed
def test_lora_two_data_parallel_ranks_match_one_and_save_one_checkpoint(make_training_backend, training_backend_factory,
                                                                        conformance_model_dir, conformance_data_parallel,
                                                                        conformance_lora, tmp_path):  # fmt: skip
    """The 2-rank test with adapters: replicas agree, match one process (1e-5), and save one adapter checkpoint."""
    _require_lora(conformance_lora)
    if not conformance_data_parallel:
        pytest.skip("the backend declares no data parallelism: the executors refuse to run it on 2 ranks")
    _check_two_ranks(make_training_backend, training_backend_factory, conformance_model_dir, tmp_path, lora=_LORA)


def _conformance_policy(model_dir: Path, **fields: Any) -> PolicyConfig:
    """The policy `make_training_backend` builds, for backends built elsewhere (the 2-rank run)."""
    settings: dict[str, Any] = {**_POLICY_DEFAULTS, "model_name": str(model_dir)}
    settings.update(fields)
    return PolicyConfig(**settings)
