"""The `hf` generation backend: the conformance suite on the tiny model, plus what is specific to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import torch

from reinforge.backends.generation.hf.backend import HFGenerationBackend
from reinforge.backends.generation.hf.config import HFGenerationConfig
from reinforge.backends.generation.sampling_utils import left_to_right_padded, to_left_padded
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.registry import Registry, RegistrySettings
from reinforge.core.run_config import PolicyConfig
from reinforge.core.sampling import SamplingParams
from reinforge.testing.conformance_generation import (
    GenerationBackendConformance,
    teacher_forcing_logprobs,
    text_stop_string,
)
from reinforge.models.tiny_model import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
CPU = HFGenerationConfig(device="cpu", max_batch_size=4)


class TestHFConformance(GenerationBackendConformance):
    """max_batch_size=4 so that n=3 over 3 prompts (9 rows) runs in several generate() calls."""

    backend_class = HFGenerationBackend
    backend_options = CPU


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf-gen") / "model", size="tiny", seed=0)


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Iterator[HFGenerationBackend]:
    backend = HFGenerationBackend(PolicyConfig(model_name=str(model_dir), max_total_sequence_length=96), CPU)
    yield backend
    backend.shutdown()


def _prompts(backend: HFGenerationBackend, questions: list[str]) -> Batch:
    tokenizer = backend.tokenizer
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    return Batch.from_sequences([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], backend.pad_token_id)


@pytest.fixture(scope="module")
def prompts(backend: HFGenerationBackend) -> Batch:
    return _prompts(backend, ["What is 2 + 2?", "Add 17 and 25, then double the result.", "Go"])


def _responses(out: Batch) -> list[list[int]]:
    return [
        out["output_ids"][row, int(out["prompt_lengths"][row]) : int(out["sequence_lengths"][row])].tolist()
        for row in range(len(out))
    ]


# -------------------------------------------------------------------------- padding helpers (hand-worked)
def test_left_padding_round_trip_by_hand() -> None:
    right = torch.tensor([[5, 6, 7], [8, 0, 0]])  # [2, 3], pad 0
    left, mask = to_left_padded(right, torch.tensor([3, 1]), pad_id=0)
    assert left.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    generated = torch.cat([left, torch.tensor([[1, 2], [3, 9]])], dim=1)  # [2, 5]: row 1 stopped after 1 token
    out = left_to_right_padded(generated, shift=torch.tensor([0, 2]), total_lengths=torch.tensor([5, 2]), width=5, fill=0)
    assert out.tolist() == [[5, 6, 7, 1, 2], [8, 3, 0, 0, 0]]


# -------------------------------------------------------------------------- logprobs
@pytest.mark.parametrize("temperature", [0.0, 0.6, 1.3])
def test_logprobs_match_teacher_forcing_to_1e_4(
    backend: HFGenerationBackend, prompts: Batch, model_dir: Path, temperature: float
) -> None:
    out = backend.generate(prompts, SamplingParams(temperature=temperature, max_new_tokens=10, n=2, seed=5))
    reference = teacher_forcing_logprobs(model_dir, out["output_ids"], out["sequence_lengths"], temperature or 1.0)
    columns = torch.arange(out["output_ids"].shape[1])
    response = (columns >= out["prompt_lengths"][:, None]) & (columns < out["sequence_lengths"][:, None])
    torch.testing.assert_close(out["generation_logprobs"], reference * response, atol=1e-4, rtol=0)


def test_logprobs_are_of_the_raw_distribution_not_the_top_p_filtered_one(
    backend: HFGenerationBackend, prompts: Batch, model_dir: Path
) -> None:
    """With top_p the sampler renormalises over the nucleus; the recorded logprob must not (the trainer cannot)."""
    out = backend.generate(prompts, SamplingParams(temperature=1.0, top_p=0.3, max_new_tokens=6, seed=0))
    reference = teacher_forcing_logprobs(model_dir, out["output_ids"], out["sequence_lengths"], 1.0)
    columns = torch.arange(out["output_ids"].shape[1])
    response = (columns >= out["prompt_lengths"][:, None]) & (columns < out["sequence_lengths"][:, None])
    torch.testing.assert_close(out["generation_logprobs"][response], reference[response], atol=1e-4, rtol=0)
    # The nucleus of a near-uniform tiny model holds many tokens: a renormalised logprob would be far higher.
    assert (out["generation_logprobs"][response] < torch.log(torch.tensor(0.3))).all()


def test_logprobs_can_be_skipped(backend: HFGenerationBackend, prompts: Batch) -> None:
    out = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=4, logprobs=False))
    assert (out["generation_logprobs"] == 0).all()
    assert torch.equal(out["output_ids"], backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=4))["output_ids"])


def test_bfloat16_policy_generates_in_bfloat16_with_float32_logprobs(model_dir: Path, prompts: Batch) -> None:
    bf16 = HFGenerationBackend(PolicyConfig(model_name=str(model_dir), precision="bfloat16", max_total_sequence_length=96), CPU)
    assert bf16.model.dtype == torch.bfloat16
    out = bf16.generate(prompts, SamplingParams(temperature=0.8, max_new_tokens=4, seed=0))
    assert out["generation_logprobs"].dtype == torch.float32 and torch.isfinite(out["generation_logprobs"]).all()
    assert (out["generation_logprobs"].sum(1) < 0).all()


# -------------------------------------------------------------------------- sampling
def test_chunking_does_not_change_greedy_outputs(model_dir: Path, backend: HFGenerationBackend, prompts: Batch) -> None:
    one_row = HFGenerationBackend(
        PolicyConfig(model_name=str(model_dir), max_total_sequence_length=96), HFGenerationConfig(device="cpu", max_batch_size=1)
    )
    assert torch.equal(one_row.generate(prompts, GREEDY)["output_ids"], backend.generate(prompts, GREEDY)["output_ids"])


def test_seedless_sampling_follows_the_backend_seed(model_dir: Path, prompts: Batch) -> None:
    policy = PolicyConfig(model_name=str(model_dir), max_total_sequence_length=96)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=6)  # seed=None
    first, twin = HFGenerationBackend(policy, CPU, seed=3), HFGenerationBackend(policy, CPU, seed=3)
    a1, a2 = first.generate(prompts, sampling), first.generate(prompts, sampling)
    b1 = twin.generate(prompts, sampling)
    assert torch.equal(a1["output_ids"], b1["output_ids"]), "same backend seed, same first call"
    assert _responses(a1) != _responses(a2), "successive seedless calls must differ"


def test_generate_leaves_the_global_rng_alone(backend: HFGenerationBackend, prompts: Batch) -> None:
    state = torch.get_rng_state()
    backend.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=4, seed=1))
    assert torch.equal(torch.get_rng_state(), state)


def test_checkpoint_generation_config_does_not_leak(tmp_path: Path, prompts: Batch, backend: HFGenerationBackend) -> None:
    """Qwen checkpoints ship top_k=20, repetition_penalty=1.05, ...; only SamplingParams may decide sampling."""
    from transformers import GenerationConfig

    folder = tmp_path / "model"
    shutil.copytree(backend.model_config.model_name, folder)
    GenerationConfig(do_sample=True, top_k=1, repetition_penalty=5.0, eos_token_id=2, pad_token_id=0).save_pretrained(folder)
    leaky = HFGenerationBackend(PolicyConfig(model_name=str(folder), max_total_sequence_length=96), CPU)
    assert torch.equal(leaky.generate(prompts, GREEDY)["output_ids"], backend.generate(prompts, GREEDY)["output_ids"])
    sampling = SamplingParams(temperature=1.0, max_new_tokens=6, seed=0)
    assert torch.equal(leaky.generate(prompts, sampling)["output_ids"], backend.generate(prompts, sampling)["output_ids"])


# -------------------------------------------------------------------------- stopping
def test_stop_string_does_not_match_across_the_prompt_boundary(backend: HFGenerationBackend, prompts: Batch) -> None:
    """The prompt ends in "assistant\\n"; a stop string "\\n" + <start of the response> spans the boundary.

    transformers' StopStringCriteria alone would stop after the first token; engines that search only
    the response (vLLM, SGLang) would not, and neither may we.
    """
    sampling = SamplingParams(temperature=1.0, max_new_tokens=8, n=4, seed=2)
    baseline = _responses(backend.generate(prompts, sampling))
    decode = backend.tokenizer.decode
    last_prompt_tokens = prompts["input_ids"].gather(1, prompts["input_lengths"][:, None] - 1).flatten()  # [B]
    assert all(decode([token]) == "\n" for token in last_prompt_tokens.tolist())
    row = next(
        (r for r, resp in enumerate(baseline) if decode(resp[:1]).isascii() and decode(resp[:1]).isprintable()
         and "\n" + decode(resp[:1]) not in decode(resp)),
        None,
    )
    assert row is not None, f"no sample starts with plain text: {baseline}"
    stop = "\n" + decode(baseline[row][:1])
    out = backend.generate(prompts, attrs.evolve(sampling, stop_strings=(stop,)))
    assert _responses(out)[row] == baseline[row]
    assert bool(out["truncated"][row]) == (len(baseline[row]) == 8 and baseline[row][-1] != backend.tokenizer.eos_token_id)


def test_stop_string_ends_the_response_with_the_completing_token(backend: HFGenerationBackend, prompts: Batch) -> None:
    sampling = SamplingParams(temperature=1.0, max_new_tokens=12, n=2, seed=21)
    baseline = _responses(backend.generate(prompts, sampling))
    row, stop = next((r, s) for r, resp in enumerate(baseline) if (s := text_stop_string(backend.tokenizer, resp, start=3)))
    out = backend.generate(prompts, attrs.evolve(sampling, stop_strings=(stop,)))
    response = _responses(out)[row]
    assert response == baseline[row][: len(response)]
    assert stop in backend.tokenizer.decode(response) and stop not in backend.tokenizer.decode(response[:-1])
    assert not bool(out["truncated"][row])


def test_every_eos_of_the_checkpoint_ends_the_response(tmp_path: Path, backend: HFGenerationBackend, prompts: Batch) -> None:
    """Instruct checkpoints list several eos ids in generation_config.json (Qwen2.5: <|im_end|>, <|endoftext|>)."""
    from transformers import GenerationConfig

    baseline = _responses(backend.generate(prompts, GREEDY))
    extra_eos = baseline[0][2]
    folder = tmp_path / "model"
    shutil.copytree(backend.model_config.model_name, folder)
    GenerationConfig(eos_token_id=[backend.tokenizer.eos_token_id, extra_eos], pad_token_id=0).save_pretrained(folder)
    two_eos = HFGenerationBackend(PolicyConfig(model_name=str(folder), max_total_sequence_length=96), CPU)
    out = two_eos.generate(prompts, GREEDY)
    for row, (response, full) in enumerate(zip(_responses(out), baseline, strict=True)):
        expected = full[: full.index(extra_eos) + 1] if extra_eos in full else full
        assert response == expected, f"row {row}"
        assert bool(out["truncated"][row]) == (extra_eos not in full)
    assert len(_responses(out)[0]) <= 3


# -------------------------------------------------------------------------- weights
def test_update_weights_through_either_tied_name(backend: HFGenerationBackend) -> None:
    model = backend.model
    embed = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embed, "the tiny model ties its embeddings"
    original = embed.detach().clone()
    try:
        backend.update_weights([("lm_head.weight", torch.ones_like(original))])
        assert (embed == 1).all()
        backend.update_weights([("model.embed_tokens.weight", 2 * torch.ones_like(original))])
        assert (model.get_output_embeddings().weight == 2).all()
    finally:
        backend.update_weights([("model.embed_tokens.weight", original)])
    assert model.get_input_embeddings().weight is embed, "weights must be updated in place"


def test_update_weights_casts_dtype_in_place(backend: HFGenerationBackend) -> None:
    norm = backend.model.model.norm.weight
    original = norm.detach().clone()
    try:
        backend.update_weights([("model.norm.weight", torch.full(original.shape, 0.5, dtype=torch.bfloat16))])
        assert norm.dtype == torch.float32 and (norm == 0.5).all()
    finally:
        backend.update_weights([("model.norm.weight", original)])


def test_bad_bucket_is_rejected_whole(backend: HFGenerationBackend) -> None:
    norm = backend.model.model.norm.weight
    original = norm.detach().clone()
    with pytest.raises(ReinforgeError, match=r"model\.norm\.weight \[3\] \(model: \[128\]\)"):
        backend.update_weights([("model.norm.weight", torch.zeros(3))])
    with pytest.raises(ReinforgeError, match="model.layers.9.mlp.weight, extra.bias"):
        backend.update_weights(
            [
                ("model.norm.weight", torch.zeros_like(original)),
                ("model.layers.9.mlp.weight", torch.zeros(1)),
                ("extra.bias", torch.zeros(1)),
            ]
        )
    assert torch.equal(norm, original), "a rejected bucket must not be partly applied"


# -------------------------------------------------------------------------- lifecycle and bad input
def test_sleep_on_cpu_is_recorded_and_blocks_generate(backend: HFGenerationBackend, prompts: Batch) -> None:
    backend.sleep()
    try:
        assert backend.asleep
        with pytest.raises(ReinforgeError, match="wake"):
            backend.generate(prompts, GREEDY)
    finally:
        backend.wake()
    assert not backend.asleep and backend.model.device.type == "cpu"


def test_shutdown_drops_the_model(model_dir: Path, prompts: Batch) -> None:
    doomed = HFGenerationBackend(PolicyConfig(model_name=str(model_dir)), CPU)
    doomed.shutdown()
    assert doomed._model is None
    with pytest.raises(ReinforgeError, match="shut down"):
        doomed.generate(prompts, GREEDY)


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ReinforgeError, match=r"does not exist(?s:.*)policy\.model_name"):
        HFGenerationBackend(PolicyConfig(model_name=str(tmp_path / "nope")), CPU)


def test_folder_without_weights(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "half-exported"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ReinforgeError, match=r"no weights"):
        HFGenerationBackend(PolicyConfig(model_name=str(folder)), CPU)


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="would reach the Hugging Face Hub")
def test_unknown_hub_name_offline() -> None:
    with pytest.raises(ReinforgeError, match=r"could not load model 'no-such-org/no-such-model'(?s:.*)download it first"):
        HFGenerationBackend(PolicyConfig(model_name="no-such-org/no-such-model"), CPU)


def test_cuda_requested_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ReinforgeError, match="no CUDA"):
        HFGenerationBackend(PolicyConfig(model_name="unused"), HFGenerationConfig(device="cuda"))


def test_empty_batch(backend: HFGenerationBackend) -> None:
    with pytest.raises(ReinforgeError, match="empty batch"):
        backend.generate(Batch(input_ids=torch.zeros(0, 3, dtype=torch.long), input_lengths=torch.zeros(0, dtype=torch.long)), GREEDY)


def test_prompt_plus_max_new_tokens_over_the_limit_names_row_and_limit(backend: HFGenerationBackend, prompts: Batch) -> None:
    longest = int(prompts["input_lengths"][1])
    sampling = SamplingParams(temperature=0.0, max_new_tokens=96 - longest + 1)
    with pytest.raises(ReinforgeError, match=rf"prompt row 1 has {longest} tokens(?s:.*)max_total_sequence_length=96"):
        backend.generate(prompts, sampling)


def test_zero_length_prompt(backend: HFGenerationBackend) -> None:
    batch = Batch(input_ids=torch.tensor([[5, 6], [0, 0]]), input_lengths=torch.tensor([2, 0]))
    with pytest.raises(ReinforgeError, match=r"row\(s\) \[1\] have length 0"):
        backend.generate(batch, GREEDY)


def test_registry_resolves_hf() -> None:
    registry = Registry.create(RegistrySettings(load_entry_points=False))
    assert registry.resolve("generation_backend", "hf") is HFGenerationBackend
    assert registry.config_class("generation_backend", "hf") is HFGenerationConfig
