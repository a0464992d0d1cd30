"""Conformance tests that any `GenerationBackend` (built-in or third-party) runs against itself.

Why: the rollout, the trainer's logprob checks and every algorithm rely on the exact layout
`GenerationBackend.generate` promises (right padding, adjacent samples, logprobs aligned with
the ids, a stop token kept, `truncated` meaning "hit max_new_tokens"). A plugin proves it keeps
that promise by subclassing one class in its own test suite:

    from reinforge.testing.conformance_generation import GenerationBackendConformance

    class TestMyBackend(GenerationBackendConformance):
        backend_class = MyBackend                 # built as MyBackend(model, backend_options, generation=..., seed=0)
        backend_options = MyBackendConfig(...)    # or override make_backend(model)
        logprob_atol = 1e-3                       # engines with fused kernels may need more than 1e-4

The tests run on the kit's tiny Qwen2 model (built offline in a temporary folder, float32),
share one backend per class, and need no GPU unless the backend does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pytest
import torch

from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.interfaces import GenerationBackend
from reinforge.core.constructors import build_generation_backend
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import GenerationConfig
from reinforge.core.sampling import SamplingParams
from reinforge.models.tiny_model import build_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REQUIRED_COLUMNS = (
    "output_ids",
    "prompt_lengths",
    "generation_lengths",
    "sequence_lengths",
    "generation_logprobs",
    "truncated",
)
QUESTIONS = ("What is 12 + 7?", "Compute 3 * 14, then add 5, and show every step.", "Hi")
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)


class GenerationBackendConformance:
    """Mix into a `Test...` class; set `backend_class` (and `backend_options`) or override `make_backend`."""

    backend_class: ClassVar[Any] = None
    backend_options: ClassVar[Any] = None
    # Tiny-model preset the tests run on.
    model_size: ClassVar[str] = "tiny"
    # Largest |generation logprob - teacher-forcing logprob| accepted, float32.
    logprob_atol: ClassVar[float] = 1e-4
    # top_p of the logprob check. The trainer cannot reproduce nucleus filtering, so a backend should report
    # log_softmax(logits / T) of the unfiltered distribution; engines whose logprobs are renormalised over the
    # nucleus (vLLM's processed logprobs) check at 1.0, where the two agree, and recipes keep top_p at 1.0.
    logprob_top_p: ClassVar[float] = 0.8
    # policy.max_total_sequence_length of the backend under test.
    max_total_sequence_length: ClassVar[int] = 128

    def make_backend(self, model: ModelConfig) -> GenerationBackend:
        """Build the backend under test (called once per test class), as the executors do."""
        if self.backend_class is None:
            raise NotImplementedError("set backend_class on the test class, or override make_backend(model)")
        return build_generation_backend(self.backend_class, model, self.backend_options, generation=GenerationConfig(), seed=0)

    # ------------------------------------------------------------------ fixtures
    # Class-scoped fixtures are classmethods: pytest runs them once per class, before any test instance exists.
    @pytest.fixture(scope="class")
    @classmethod
    def gen_model_dir(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build_model(tmp_path_factory.mktemp("conformance") / "model", size=cls.model_size, seed=0)

    @pytest.fixture(scope="class")
    @classmethod
    def gen_model(cls, gen_model_dir: Path) -> ModelConfig:
        return ModelConfig(
            model_name=str(gen_model_dir), precision="float32", max_total_sequence_length=cls.max_total_sequence_length
        )

    @pytest.fixture(scope="class")
    @classmethod
    def gen_backend(cls, gen_model: ModelConfig) -> Iterator[GenerationBackend]:
        backend = cls().make_backend(gen_model)
        yield backend
        backend.shutdown()

    @pytest.fixture(scope="class")
    @classmethod
    def gen_tokenizer(cls, gen_model_dir: Path) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(gen_model_dir)

    @pytest.fixture(scope="class")
    @classmethod
    def gen_prompts(cls, gen_tokenizer: PreTrainedTokenizerBase) -> Batch:
        """Three chat prompts of different lengths, right-padded, with a list and a tensor column to carry."""
        texts = [
            gen_tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in QUESTIONS
        ]
        ids = [gen_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        batch = Batch.from_sequences(ids, pad_id=gen_tokenizer.pad_token_id)
        assert len(set(batch["input_lengths"].tolist())) == len(QUESTIONS), "prompts must differ in length"
        batch["metadata"] = [{"question": q} for q in QUESTIONS]
        batch["prompt_index"] = torch.arange(len(QUESTIONS))
        return batch

    # ------------------------------------------------------------------ layout
    def test_is_a_generation_backend(self, gen_backend: GenerationBackend) -> None:
        assert isinstance(gen_backend, GenerationBackend)

    def test_output_columns_and_shapes(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        out = gen_backend.generate(gen_prompts, GREEDY)
        rows = len(gen_prompts)
        assert set(REQUIRED_COLUMNS) <= set(out.keys())
        assert len(out) == rows
        ids, logprobs = out["output_ids"], out["generation_logprobs"]
        assert ids.dim() == 2 and not ids.is_floating_point()
        assert logprobs.shape == ids.shape and logprobs.is_floating_point()
        for key in ("prompt_lengths", "generation_lengths", "sequence_lengths"):
            assert out[key].shape == (rows,) and not out[key].is_floating_point(), key
        assert out["truncated"].shape == (rows,) and out["truncated"].dtype == torch.bool
        assert ids.shape[1] == int(out["sequence_lengths"].max()), "output_ids is wider than its longest row"

    def test_lengths_consistent_with_padding(
        self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_tokenizer: PreTrainedTokenizerBase
    ) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=6, seed=3)
        out = gen_backend.generate(gen_prompts, sampling)
        _check_layout(out, gen_prompts, sampling, gen_tokenizer.pad_token_id)

    def test_n_samples_are_adjacent_and_carry_columns(
        self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_tokenizer: PreTrainedTokenizerBase
    ) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=6, n=3, seed=1)
        out = gen_backend.generate(gen_prompts, sampling)
        assert len(out) == 3 * len(gen_prompts)
        _check_layout(out, gen_prompts, sampling, gen_tokenizer.pad_token_id)
        assert out["metadata"] == [m for m in gen_prompts["metadata"] for _ in range(3)]
        assert out["prompt_index"].tolist() == [i for i in range(len(gen_prompts)) for _ in range(3)]
        responses = _responses(out)
        for prompt in range(len(gen_prompts)):
            group = responses[3 * prompt : 3 * prompt + 3]
            assert len({tuple(r) for r in group}) > 1, f"the 3 samples of prompt {prompt} are identical: {group}"

    # ------------------------------------------------------------------ determinism
    def test_greedy_is_deterministic(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        first, second = gen_backend.generate(gen_prompts, GREEDY), gen_backend.generate(gen_prompts, GREEDY)
        assert torch.equal(first["output_ids"], second["output_ids"])
        torch.testing.assert_close(first["generation_logprobs"], second["generation_logprobs"], atol=self.logprob_atol, rtol=0)

    def test_greedy_row_does_not_depend_on_batch_mates(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        """Catches padding bugs: each prompt alone must give what it gives inside the padded batch."""
        batched = gen_backend.generate(gen_prompts, GREEDY)
        for row in range(len(gen_prompts)):
            alone = gen_backend.generate(gen_prompts.select([row]).trim(), GREEDY)
            assert _responses(alone) == [_responses(batched)[row]], f"row {row}"
            width = int(alone["sequence_lengths"][0])
            torch.testing.assert_close(
                alone["generation_logprobs"][0, :width], batched["generation_logprobs"][row, :width], atol=self.logprob_atol, rtol=0
            )

    def test_same_seed_same_samples(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=6, n=2, seed=7)
        first, second = gen_backend.generate(gen_prompts, sampling), gen_backend.generate(gen_prompts, sampling)
        assert torch.equal(first["output_ids"], second["output_ids"])
        other = gen_backend.generate(gen_prompts, SamplingParams(temperature=1.0, max_new_tokens=6, n=2, seed=8))
        assert _responses(other) != _responses(first), "a different seed gave the same samples"

    def test_top_k_1_equals_greedy(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        greedy = gen_backend.generate(gen_prompts, GREEDY)
        top1 = gen_backend.generate(gen_prompts, SamplingParams(temperature=0.7, top_k=1, max_new_tokens=8, seed=0))
        assert _responses(top1) == _responses(greedy)

    # ------------------------------------------------------------------ stopping
    def test_truncated_means_max_new_tokens_without_stop(
        self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_tokenizer: PreTrainedTokenizerBase
    ) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=3, n=4, seed=0)
        out = gen_backend.generate(gen_prompts, sampling)
        eos = gen_tokenizer.eos_token_id
        for row, response in enumerate(_responses(out)):
            ended = response[-1] == eos
            assert bool(out["truncated"][row]) == (not ended), f"row {row}: {response}"
            if not ended:
                assert len(response) == sampling.max_new_tokens, f"row {row} stopped early without eos: {response}"

    def test_stop_token_is_honoured_and_kept(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        baseline = _responses(gen_backend.generate(gen_prompts, GREEDY))
        stop = _pick_stop_token(baseline[0])
        out = gen_backend.generate(gen_prompts, SamplingParams(temperature=0.0, max_new_tokens=8, stop_token_ids=(stop,)))
        for row, (response, full) in enumerate(zip(_responses(out), baseline, strict=True)):
            expected = full[: full.index(stop) + 1] if stop in full else full
            assert response == expected, f"row {row} with stop token {stop}"
            if stop in full:
                assert not bool(out["truncated"][row]), f"row {row} stopped on {stop} but is marked truncated"

    def test_stop_string_is_honoured_and_kept(
        self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_tokenizer: PreTrainedTokenizerBase
    ) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=10, seed=11)
        baseline = _responses(gen_backend.generate(gen_prompts, sampling))
        stop = next(filter(None, (text_stop_string(gen_tokenizer, r, start=2) for r in baseline)), None)
        assert stop is not None, f"no two adjacent sampled tokens decode to plain text: {baseline}; pick another seed"
        out = gen_backend.generate(gen_prompts, attrs.evolve(sampling, stop_strings=(stop,)))
        for row, (response, full) in enumerate(zip(_responses(out), baseline, strict=True)):
            assert full[: len(response)] == response, f"row {row} is not a prefix of the run without stop strings"
            text = gen_tokenizer.decode(response)
            if stop in gen_tokenizer.decode(full):
                assert stop in text and stop not in gen_tokenizer.decode(response[:-1]), f"row {row}: {text!r} vs {stop!r}"
                assert not bool(out["truncated"][row])
            else:
                assert response == full
        assert any(stop in gen_tokenizer.decode(r) for r in _responses(out))

    # ------------------------------------------------------------------ logprobs
    def test_logprobs_finite_nonpositive_and_aligned(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        out = gen_backend.generate(gen_prompts, SamplingParams(temperature=0.7, max_new_tokens=6, n=2, seed=2))
        logprobs = out["generation_logprobs"]  # [R, T]
        response = _response_mask(out)  # [R, T]
        assert torch.isfinite(logprobs).all()
        assert (logprobs[response] <= 0).all()
        assert (logprobs[response] < 0).any(), "every response logprob is 0: not computed?"
        assert (logprobs[~response] == 0).all(), "logprobs must be 0 on prompt and padding columns"

    def test_logprobs_match_teacher_forcing(self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_model_dir: Path) -> None:
        """Logprobs equal log_softmax(logits / T) of a plain forward over output_ids, the trainer's computation."""
        temperature = 0.7
        out = gen_backend.generate(gen_prompts, SamplingParams(temperature=temperature, top_p=self.logprob_top_p, max_new_tokens=6, n=2, seed=4))
        reference = teacher_forcing_logprobs(gen_model_dir, out["output_ids"], out["sequence_lengths"], temperature)
        response = _response_mask(out)
        torch.testing.assert_close(out["generation_logprobs"][response], reference[response], atol=self.logprob_atol, rtol=0)

    # ------------------------------------------------------------------ weights and memory
    def test_update_weights_changes_outputs_and_restoring_restores_them(
        self, gen_backend: GenerationBackend, gen_prompts: Batch, gen_model_dir: Path
    ) -> None:
        original = load_hf_weights(gen_model_dir)
        before = gen_backend.generate(gen_prompts, GREEDY)
        noise = torch.Generator().manual_seed(0)
        perturbed = [(name, t + 0.1 * torch.randn(t.shape, generator=noise)) for name, t in original.items()]
        half = len(perturbed) // 2
        gen_backend.update_weights(iter(perturbed[:half]))  # two buckets, the second as a generator
        gen_backend.update_weights(pair for pair in perturbed[half:])
        changed = gen_backend.generate(gen_prompts, GREEDY)
        assert not torch.allclose(changed["generation_logprobs"], before["generation_logprobs"])
        gen_backend.update_weights(list(original.items()))
        restored = gen_backend.generate(gen_prompts, GREEDY)
        assert torch.equal(restored["output_ids"], before["output_ids"])
        torch.testing.assert_close(restored["generation_logprobs"], before["generation_logprobs"], atol=1e-6, rtol=0)

    def test_update_weights_rejects_unknown_names(self, gen_backend: GenerationBackend) -> None:
        with pytest.raises(ReinforgeError, match="no_such_layer.weight"):
            gen_backend.update_weights([("no_such_layer.weight", torch.zeros(2, 2))])

    def test_sleep_wake_keeps_outputs(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        before = gen_backend.generate(gen_prompts, GREEDY)
        gen_backend.sleep()
        gen_backend.wake()
        after = gen_backend.generate(gen_prompts, GREEDY)
        assert torch.equal(after["output_ids"], before["output_ids"])
        torch.testing.assert_close(after["generation_logprobs"], before["generation_logprobs"], atol=1e-6, rtol=0)

    # ------------------------------------------------------------------ bad input
    def test_empty_batch_is_a_user_error(self, gen_backend: GenerationBackend) -> None:
        empty = Batch(input_ids=torch.zeros(0, 4, dtype=torch.long), input_lengths=torch.zeros(0, dtype=torch.long))
        with pytest.raises(ReinforgeError, match="empty"):
            gen_backend.generate(empty, GREEDY)

    def test_overlong_prompt_is_a_user_error(self, gen_backend: GenerationBackend, gen_prompts: Batch) -> None:
        longest = int(gen_prompts["input_lengths"].argmax())
        too_many = self.max_total_sequence_length - int(gen_prompts["input_lengths"][longest]) + 1
        with pytest.raises(ReinforgeError, match=rf"row {longest}\b(?s:.*){self.max_total_sequence_length}"):
            gen_backend.generate(gen_prompts, SamplingParams(temperature=0.0, max_new_tokens=too_many))


# ---------------------------------------------------------------------- helpers (public: handy in backend tests)
def teacher_forcing_logprobs(
    model_dir: str | Path, output_ids: torch.Tensor, sequence_lengths: torch.Tensor, temperature: float
) -> torch.Tensor:
    """`# [R, T]` log_softmax(logits / T) of each token given its prefix, from one float32 forward; column 0 is 0."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = output_ids.long().cpu()  # [R, T]
    mask = (torch.arange(ids.shape[1]).unsqueeze(0) < sequence_lengths.cpu().unsqueeze(1)).long()  # [R, T]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()  # [R, T, V]
    token_logprobs = torch.log_softmax(logits[:, :-1] / temperature, dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
    return torch.nn.functional.pad(token_logprobs, (1, 0)) * mask  # [R, T]


def load_hf_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face folder's safetensors files, by name."""
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


def text_stop_string(tokenizer: PreTrainedTokenizerBase, response: list[int], *, start: int = 0) -> str | None:
    """The text of the first two adjacent tokens from `start` on that each decode to printable ASCII, or None.

    A tiny random model often emits byte-level tokens holding half a UTF-8 character; their text
    (with U+FFFD) would not survive decoding in context, so it cannot serve as a stop string.
    """
    pieces = [tokenizer.decode([token]) for token in response]
    for index in range(start, len(pieces) - 1):
        pair = pieces[index] + pieces[index + 1]
        if all(piece.isascii() and piece.isprintable() and piece for piece in pieces[index : index + 2]) and pair.strip():
            return pair
    return None


def _responses(out: Batch) -> list[list[int]]:
    starts, stops = out["prompt_lengths"].tolist(), out["sequence_lengths"].tolist()
    return [out["output_ids"][row, start:stop].tolist() for row, (start, stop) in enumerate(zip(starts, stops, strict=True))]


def _response_mask(out: Batch) -> torch.Tensor:
    columns = torch.arange(out["output_ids"].shape[1]).unsqueeze(0)  # [1, T]
    return (columns >= out["prompt_lengths"].unsqueeze(1)) & (columns < out["sequence_lengths"].unsqueeze(1))  # [R, T]


def _pick_stop_token(response: list[int]) -> int:
    """A token of `response` whose first occurrence is as late as possible (so the stop visibly cuts the response)."""
    first = {}
    for index, token in enumerate(response):
        first.setdefault(token, index)
    return max(first, key=first.__getitem__)


def _check_layout(out: Batch, prompts: Batch, sampling: SamplingParams, pad_id: int) -> None:
    n = sampling.n
    input_ids, input_lengths = prompts["input_ids"], prompts["input_lengths"]
    assert torch.equal(out["prompt_lengths"], input_lengths.repeat_interleave(n))
    assert torch.equal(out["sequence_lengths"], out["prompt_lengths"] + out["generation_lengths"])
    assert (out["generation_lengths"] >= 1).all() and (out["generation_lengths"] <= sampling.max_new_tokens).all()
    ids = out["output_ids"]
    columns = torch.arange(ids.shape[1]).unsqueeze(0)
    assert (ids[columns >= out["sequence_lengths"].unsqueeze(1)] == pad_id).all(), "padding must be the pad id"
    for row in range(len(out)):
        prompt = int(input_lengths[row // n])
        assert ids[row, :prompt].tolist() == input_ids[row // n, :prompt].tolist(), f"row {row} lost its prompt"
