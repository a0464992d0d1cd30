"""Microbatch splits, sequence packing, shared prompts and the response-only output layer of the `dtensor` backend.

The contract: whatever the split or layout, train() gives the same loss, metrics and update, and
logprobs() the same values, as the fixed-size padded path (to 1e-5), tied and untied heads alike.
"""

from __future__ import annotations

import attrs
import pytest
import torch

from reinforge.backends.training.dtensor import microbatching
from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.dtensor.config import DTensorConfig
from reinforge.backends.training.dtensor.logprobs import PolicyModule, check_packing, check_shared_prompts, token_logprobs
from reinforge.backends.training.dtensor.shared_prompts import layout, split_columns
from reinforge.core.batch import Batch
from reinforge.core.errors import ReinforgeError
from reinforge.core.run_config import OptimizerConfig, PolicyConfig
from reinforge.testing.conformance_training import ConformanceNLLLoss, grouped_batch, weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SGD = OptimizerConfig(name="sgd", lr=1.0, weight_decay=0.0)  # the weight change is the gradient itself


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory):
    from reinforge.models.tiny_model import build_model

    return build_model(size="tiny")


@pytest.fixture(scope="module")
def untied_model_dir(tied_model_dir, tmp_path_factory):
    """The tiny model with its own (perturbed) lm_head, so head gradients do not land on the embeddings."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    generator = torch.Generator().manual_seed(3)
    head = model.get_input_embeddings().weight.detach().clone()
    head += 0.05 * torch.randn(head.shape, generator=generator)
    model.lm_head.weight = torch.nn.Parameter(head)
    out = tmp_path_factory.mktemp("untied")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tied_model_dir).save_pretrained(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.lm_head.weight.data_ptr() != reloaded.get_input_embeddings().weight.data_ptr()
    return out


def natural_batch(vocab: int, *, rows: int = 12, seed: int = 0) -> Batch:
    """Rows of very different lengths (4..40), prompt 3-6 tokens, response mask after it, one row masked out."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 41, (rows,), generator=generator)  # [B]
    width = int(lengths.max()) + 3  # extra all-padding columns, as rollouts have
    ids = torch.randint(1, vocab, (rows, width), generator=generator)  # [B, T]
    columns = torch.arange(width)[None, :]
    valid = columns < lengths[:, None]
    prompt = torch.randint(3, 7, (rows,), generator=generator)[:, None].clamp(max=lengths[:, None] - 1)
    sample_mask = torch.ones(rows)
    sample_mask[1] = 0.0
    return Batch(
        input_ids=torch.where(valid, ids, 0),
        input_lengths=lengths,
        token_mask=(valid & (columns >= prompt)).float(),
        sample_mask=sample_mask,
    )


# ---------------------------------------------------------------------- the head at selected positions
def _float64_reference(hidden, head_weight, ids, lengths, wanted, temperature):
    """From the definition: log_softmax(h[t-1] W^T / temp)[ids[t]] at wanted, valid, t >= 1 columns; 0 elsewhere."""
    batch, width = ids.shape
    out = torch.zeros(batch, width, dtype=torch.float64)
    for b in range(batch):
        for t in range(1, int(lengths[b])):
            if wanted[b, t]:
                logits = hidden[b, t - 1].double() @ head_weight.double().T / temperature  # [V]
                out[b, t] = logits[ids[b, t]] - torch.logsumexp(logits, dim=0)
    return out


def test_selected_positions_match_a_float64_reimplementation_over_random_cases():
    generator = torch.Generator().manual_seed(0)
    for case in range(300):
        batch, width, dim, vocab = (int(torch.randint(1, 5, (1,), generator=generator)) for _ in range(4))
        width, dim, vocab = width + 2, dim + 1, vocab + 3
        head = torch.nn.Linear(dim, vocab, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.randn(vocab, dim, generator=generator))
        hidden = torch.randn(batch, width, dim, generator=generator)
        ids = torch.randint(0, vocab, (batch, width), generator=generator)
        lengths = torch.randint(1, width + 1, (batch,), generator=generator)
        wanted = torch.rand(batch, width, generator=generator) < 0.6
        temperature = float(torch.empty(1).uniform_(0.5, 2.0, generator=generator))
        chunk = int(torch.randint(1, 4, (1,), generator=generator))
        got = token_logprobs(head, hidden, ids, lengths, temperature=temperature, chunk_size=chunk, recompute=case % 2 == 0,
                             wanted=wanted)
        expected = _float64_reference(hidden, head.weight.detach(), ids, lengths, wanted, temperature)
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0, msg=f"case {case}")


@pytest.mark.parametrize("tied", [True, False])
def test_selected_positions_give_the_full_paths_values_and_gradients(tied):
    torch.manual_seed(0)
    vocab, dim = 50, 8
    embed = torch.nn.Embedding(vocab, dim)
    head = torch.nn.Linear(dim, vocab, bias=False)
    if tied:
        head.weight = embed.weight
    ids = torch.randint(0, vocab, (3, 9))
    lengths = torch.tensor([9, 5, 7])
    wanted = torch.zeros(3, 9, dtype=torch.bool)
    wanted[0, 4:] = True
    wanted[1, 2:5] = True
    wanted[2, 6:] = True
    weight_of_token = torch.randn(3, 9)

    def loss_and_grads(selected: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        embed.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        hidden = torch.tanh(embed(ids))  # [B, T, H]
        lps = token_logprobs(head, hidden, ids, lengths, temperature=0.7, chunk_size=2, recompute=True,
                             wanted=wanted if selected else None)
        loss = (lps * wanted * weight_of_token).sum()
        loss.backward()
        masked = torch.where(wanted, lps, 0.0).detach()
        return masked, [embed.weight.grad.clone(), head.weight.grad.clone()]

    full_values, full_grads = loss_and_grads(False)
    values, grads = loss_and_grads(True)
    torch.testing.assert_close(values, full_values, atol=1e-6, rtol=0)
    for got, expected in zip(grads, full_grads):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert full_values[0, 4] != 0.0  # the masked comparison compares real values


# ---------------------------------------------------------------------- packing
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_packed_forward_equals_the_padded_one(tied_model_dir, attn):
    from transformers import AutoModelForCausalLM

    causal_lm = AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32, attn_implementation=attn)
    module = PolicyModule(causal_lm, chunk_size=5).eval()
    batch = natural_batch(causal_lm.config.vocab_size, rows=6)
    padded = module(batch["input_ids"], batch["input_lengths"])  # [B, T]
    bins = batch.pack(64)
    assert len(bins) > 1 and any(len(b.rows) > 1 for b in bins)  # the test packs several rows per sequence
    for packed in bins:
        flat = module(packed.input_ids, torch.tensor([packed.num_tokens]), 1.0, None, packed.position_ids)  # [1, N]
        for row, piece in zip(packed.rows, packed.unpack(flat)):
            torch.testing.assert_close(piece, padded[row, : len(piece)], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- the plans
def test_plans_by_hand():
    lengths = torch.tensor([3, 9, 5, 9, 2])
    batch = Batch(input_ids=torch.ones(5, 9, dtype=torch.long), input_lengths=lengths)

    def rows(options, size=2):
        return [p.rows for p in microbatching.plan(batch, options, size)]

    assert rows(DTensorConfig(share_prompt_forward=False)) == [[0, 1], [2, 3], [4]]
    assert rows(DTensorConfig(share_prompt_forward=False, microbatching="sorted")) == [[1, 3], [2, 0], [4]]
    # longest first: 9,9 (2x9=18 <= 20); then 5,3,2 (3x5=15 <= 20)
    assert rows(DTensorConfig(share_prompt_forward=False, microbatching="token_budget", max_tokens_per_microbatch=20)) == [[1, 3], [2, 0, 4]]
    # first-fit decreasing into bins of 12: [9(1), 3(0)], [9(3), 2(4)], [5(2)]
    assert rows(DTensorConfig(share_prompt_forward=False, sequence_packing=True, max_tokens_per_microbatch=12)) == [[1, 0], [3, 4], [2]]
    widths = [p.batch["input_ids"].shape[1] for p in microbatching.plan(batch, DTensorConfig(share_prompt_forward=False, microbatching="sorted"), 2)]
    assert widths == [9, 5, 2]  # each group trimmed to its own longest row
    # What each pass costs: padded rows x width; packed rows their lengths (9+3, 9+2, 5).
    sorted_plans = microbatching.plan(batch, DTensorConfig(share_prompt_forward=False, microbatching="sorted"), 2)
    assert [p.positions for p in sorted_plans] == [18, 10, 2]
    packed = microbatching.plan(batch, DTensorConfig(share_prompt_forward=False, sequence_packing=True, max_tokens_per_microbatch=12), 2)
    assert [p.positions for p in packed] == [12, 11, 5]
    # No token_mask, no response selection: the head runs wherever the decoder does.
    assert [p.head_positions(DTensorConfig(share_prompt_forward=False)) for p in sorted_plans] == [18, 10, 2]


def test_packing_with_a_budget_below_the_longest_row_is_a_clear_error():
    batch = Batch(input_ids=torch.ones(2, 9, dtype=torch.long), input_lengths=torch.tensor([9, 4]))
    with pytest.raises(ReinforgeError, match="max_tokens_per_microbatch to at least 9"):
        microbatching.plan(batch, DTensorConfig(share_prompt_forward=False, sequence_packing=True, max_tokens_per_microbatch=8), 2)


# ---------------------------------------------------------------------- the backend, end to end
VARIANTS = {
    "sorted": DTensorConfig(share_prompt_forward=False, microbatching="sorted", logprob_chunk_size=7),
    "token_budget": DTensorConfig(share_prompt_forward=False, microbatching="token_budget", max_tokens_per_microbatch=90, logprob_chunk_size=7),
    "token_budget_default": DTensorConfig(share_prompt_forward=False, microbatching="token_budget", logprob_chunk_size=7),
    "packing": DTensorConfig(share_prompt_forward=False, sequence_packing=True, max_tokens_per_microbatch=80, logprob_chunk_size=7),
    "response_head": DTensorConfig(share_prompt_forward=False, lm_head_positions="response", logprob_chunk_size=7),
    "packing_response_head": DTensorConfig(
        sequence_packing=True, max_tokens_per_microbatch=80, lm_head_positions="response", logprob_chunk_size=7
    ),
    # every prompt distinct here: each pass runs one prefix per row (the degenerate case must still be exact)
    "shared_prompts_distinct": DTensorConfig(share_prompt_forward=True, logprob_chunk_size=7),
}
# On rows that share prompts (GRPO-like groups): each split the plan can make.
SHARED = {
    "shared_fixed": DTensorConfig(share_prompt_forward=True, logprob_chunk_size=7),
    "shared_sorted": DTensorConfig(share_prompt_forward=True, microbatching="sorted", logprob_chunk_size=7),
    "shared_token_budget": DTensorConfig(
        share_prompt_forward=True, microbatching="token_budget", max_tokens_per_microbatch=40, logprob_chunk_size=7
    ),
    "shared_token_budget_default": DTensorConfig(share_prompt_forward=True, microbatching="token_budget"),
    # the default: train() shares prompts, logprobs() keeps whole rows
    "default": DTensorConfig(logprob_chunk_size=7),
}


def _backend(model_dir, options: DTensorConfig) -> DTensorBackend:
    policy = PolicyConfig(
        model_name=str(model_dir), train_global_batch_size=12, train_micro_batch_size=3, logprob_batch_size=3,
        max_total_sequence_length=64, max_grad_norm=None, optimizer=SGD,
    )
    return DTensorBackend(policy, options)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_split_and_layout_gives_the_padded_paths_loss_gradients_and_logprobs(
    variant, tied, tied_model_dir, untied_model_dir
):
    model_dir = tied_model_dir if tied else untied_model_dir
    _assert_same_as_padded(model_dir, VARIANTS[variant], lambda vocab: natural_batch(vocab))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("variant", sorted(SHARED))
def test_shared_prompts_give_the_padded_paths_loss_gradients_and_logprobs(
    variant, tied, tied_model_dir, untied_model_dir
):
    model_dir = tied_model_dir if tied else untied_model_dir
    _assert_same_as_padded(model_dir, SHARED[variant], lambda vocab: grouped_batch(vocab, prompts=4, group=3))


def _assert_same_as_padded(model_dir, options: DTensorConfig, make_batch) -> None:
    """train() and logprobs() of `options` against the fixed-size padded path: same loss, metrics, update, logprobs."""
    reference = _backend(model_dir, DTensorConfig(logprob_chunk_size=7, share_prompt_forward=False))
    candidate = _backend(model_dir, options)
    try:
        batch = make_batch(reference.model.config.vocab_size)
        mask = batch["token_mask"].bool()
        expected_lps, got_lps = reference.logprobs(batch, temperature=0.8), candidate.logprobs(batch, temperature=0.8)
        if options.lm_head_positions == "response" or options.share_prompt_forward is True:
            assert torch.equal(got_lps[~mask], torch.zeros_like(got_lps[~mask]))
            expected_lps = torch.where(mask, expected_lps, 0.0)
        assert mask.sum() > 20 and expected_lps[mask].abs().min() > 0  # real values are compared, not zeros
        torch.testing.assert_close(got_lps, expected_lps, atol=1e-5, rtol=0)

        expected = reference.train(batch, ConformanceNLLLoss(), temperature=0.8)
        got = candidate.train(batch, ConformanceNLLLoss(), temperature=0.8)
        for key in ("loss", "grad_norm", "rows", "tokens", "token_logprob_min", "token_logprob_max"):
            assert got[key] == pytest.approx(expected[key], abs=1e-5), key
        before = weights(_backend(model_dir, DTensorConfig()))
        after_ref, after = weights(reference), weights(candidate)
        assert max((after_ref[k] - before[k]).abs().max().item() for k in before) > 1e-3  # a real update
        worst = max((after[k] - after_ref[k]).abs().max().item() for k in after)
        assert worst <= 1e-5, f"weights differ by {worst}"
    finally:
        reference.shutdown()
        candidate.shutdown()


def test_shared_forward_equals_the_plain_forward_over_random_groupings(tied_model_dir):
    """80 random batches (1-4 prompts x 1-5 responses, empty responses, temperatures): the same logprobs to 1e-5."""
    from transformers import AutoModelForCausalLM

    module = PolicyModule(AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32), chunk_size=5).eval()
    vocab = module.causal_lm.config.vocab_size
    generator = torch.Generator().manual_seed(11)
    compared = 0
    for seed in range(80):
        prompts, group = (int(torch.randint(1, n, (1,), generator=generator)) for n in (5, 6))
        batch = grouped_batch(vocab, prompts=prompts, group=group, seed=seed)
        temperature = float(torch.empty(1).uniform_(0.5, 1.5, generator=generator))
        mask = batch["token_mask"].bool()
        shared = layout(batch, split_columns(batch))
        assert len(shared.prefix_ids) <= len(batch)
        with torch.no_grad():
            plain = module(batch["input_ids"], batch["input_lengths"], temperature, mask)
            got = module(batch["input_ids"], batch["input_lengths"], temperature, mask, None, shared)
        torch.testing.assert_close(got, plain, atol=1e-5, rtol=0)
        compared += int(mask[:, 1:].sum())
    assert compared > 1000


def test_shared_plans_by_hand():
    """Prompt A (3 tokens) rows 0, 2, 4 and prompt B (2 tokens) rows 1, 3, responses of 2, 1, 4, 2, 1 tokens."""
    a, b = [5, 6, 7], [8, 9]
    rows = [a + [1, 2], b + [3], a + [4, 4, 4, 4], b + [2, 2], a + [1]]
    width = 8
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    lengths = torch.tensor([len(r) for r in rows])
    split = torch.tensor([3, 2, 3, 2, 3])
    columns = torch.arange(width)[None, :]
    mask = ((columns >= split[:, None]) & (columns < lengths[:, None])).float()
    batch = Batch(input_ids=ids, input_lengths=lengths, token_mask=mask)
    assert split_columns(batch).tolist() == split.tolist()

    def rows_of(options, size=2):
        return [p.rows for p in microbatching.plan(batch, options, size)]

    assert rows_of(DTensorConfig(share_prompt_forward=True)) == [[0, 2], [4, 1], [3]]  # groups kept adjacent
    assert rows_of(DTensorConfig(share_prompt_forward=True, microbatching="sorted")) == [[2, 0], [4, 3], [1]]
    # Budget 12: [2, 0] costs 1 x 3 + 2 x 4 = 11 (adding row 4 would cost 15); [4, 3, 1] costs 2 x 3 + 3 x 2 = 12.
    budget = DTensorConfig(share_prompt_forward=True, microbatching="token_budget", max_tokens_per_microbatch=12)
    plans = microbatching.plan(batch, budget, 2)
    assert [p.rows for p in plans] == [[2, 0], [4, 3, 1]]
    shared = plans[1].shared
    assert shared.prefix_ids.tolist() == [[5, 6, 7], [8, 9, 0]] and shared.prefix_lengths.tolist() == [3, 2]
    assert shared.owner.tolist() == [0, 1, 1] and shared.split.tolist() == [3, 2, 2]
    assert shared.suffix_ids.tolist() == [[1, 0], [2, 2], [3, 0]] and shared.suffix_lengths.tolist() == [1, 2, 1]
    assert shared.num_tokens == 6 + 6  # against 3 rows x 4 columns = 12 padded: equal here, fewer as groups grow
    # The head runs at the response tokens only (2 + 4, then 1 + 2 + 1), whatever lm_head_positions says.
    assert [(p.positions, p.head_positions(budget)) for p in plans] == [(3 + 8, 6), (12, 4)]
    padded = microbatching.plan(batch, DTensorConfig(share_prompt_forward=False), 2)
    assert [(p.positions, p.head_positions(DTensorConfig(share_prompt_forward=False))) for p in padded] == [(10, 10), (14, 14), (4, 4)]
    response_only = DTensorConfig(share_prompt_forward=False, lm_head_positions="response")
    assert [p.head_positions(response_only) for p in padded] == [3, 6, 1]


def test_shared_prompts_compute_fewer_positions_on_grpo_groups():
    """What the option is for: with 8 samples per prompt, the passes hold far fewer positions than padded rows."""
    batch = grouped_batch(500, prompts=4, group=8, seed=3)
    options = DTensorConfig(share_prompt_forward=True, microbatching="token_budget")
    shared = sum(p.shared.num_tokens for p in microbatching.plan(batch, options, 8))
    padded = sum(p.batch["input_ids"].numel() for p in microbatching.plan(batch, DTensorConfig(share_prompt_forward=False, microbatching="token_budget"), 8))
    assert shared < 0.85 * padded, (shared, padded)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DTensorConfig(share_prompt_forward=True, sequence_packing=True), "share_prompt_forward and sequence_packing"),
        (DTensorConfig(share_prompt_forward=True, activation_checkpointing=True), "activation_checkpointing drops"),
    ],
)
def test_shared_prompts_with_an_incompatible_option_is_a_clear_error(tied_model_dir, options, message):
    with pytest.raises(ReinforgeError, match=message):
        _backend(tied_model_dir, options)


def test_the_shared_prompt_probe_rejects_a_model_that_misreads_the_cache(tied_model_dir):
    from transformers import AutoModelForCausalLM

    causal_lm = AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32)
    check_shared_prompts(PolicyModule(causal_lm, chunk_size=64).eval(), torch.device("cpu"))  # the real Qwen2 passes

    class OtherPrompt(PolicyModule):
        """Each row continues another row's prompt (what a cache indexed wrongly would compute)."""

        def forward(self, input_ids, lengths, temperature=1.0, wanted=None, position_ids=None, shared=None):
            if shared is not None:
                shared = attrs.evolve(shared, owner=shared.owner.flip(0))
            return super().forward(input_ids, lengths, temperature, wanted, position_ids, shared)

    with pytest.raises(ReinforgeError, match="share_prompt_forward: .* gives different logprobs"):
        check_shared_prompts(OtherPrompt(causal_lm, chunk_size=64).eval(), torch.device("cpu"))


def test_token_budget_and_packing_use_fewer_padded_tokens_than_fixed(tied_model_dir):
    """What the variants are for: the planned passes hold fewer (padded) positions than fixed groups."""
    batch = natural_batch(500, rows=24, seed=1)

    def positions(options):
        plans = microbatching.plan(batch, options, 4)
        return sum(p.packed.num_tokens if p.packed else p.batch["input_ids"].numel() for p in plans)

    lengths = batch["input_lengths"]
    fixed = positions(DTensorConfig(share_prompt_forward=False))
    assert positions(DTensorConfig(share_prompt_forward=False, microbatching="sorted")) < fixed
    assert positions(DTensorConfig(share_prompt_forward=False, microbatching="token_budget")) < fixed
    assert positions(DTensorConfig(share_prompt_forward=False, sequence_packing=True)) == int(lengths.sum())  # no padding at all


def test_the_packing_probe_rejects_a_model_that_ignores_row_boundaries(tied_model_dir):
    from transformers import AutoModelForCausalLM

    causal_lm = AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32)
    module = PolicyModule(causal_lm, chunk_size=64).eval()
    check_packing(module, torch.device("cpu"))  # the real Qwen2 passes

    class OneMaskForAll(PolicyModule):
        """Drops position_ids, so the pack is one long causal sequence (what an old attention would do)."""

        def forward(self, input_ids, lengths, temperature=1.0, wanted=None, position_ids=None):
            return super().forward(input_ids, lengths, temperature, wanted, None)

    with pytest.raises(ReinforgeError, match="lets packed rows attend to each other"):
        check_packing(OneMaskForAll(causal_lm, chunk_size=64).eval(), torch.device("cpu"))


@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen3", "phi3"])
def test_other_architectures_honour_packed_row_boundaries_and_shared_prompts(architecture):
    """The probes (a packed forward equals the separate ones; a shared-prompt one the plain one) on other families."""
    import transformers

    sizes = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64)
    configs = {
        "llama": (transformers.LlamaConfig(**sizes), transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig(**sizes), transformers.MistralForCausalLM),
        "qwen3": (transformers.Qwen3Config(**sizes, head_dim=8), transformers.Qwen3ForCausalLM),
        "phi3": (transformers.Phi3Config(**sizes, pad_token_id=0), transformers.Phi3ForCausalLM),
    }
    config, model_class = configs[architecture]
    torch.manual_seed(0)
    module = PolicyModule(model_class(config).eval(), chunk_size=64)
    check_packing(module, torch.device("cpu"))
    check_shared_prompts(module, torch.device("cpu"))


@pytest.mark.parametrize(
    "options",
    [DTensorConfig(share_prompt_forward=True), DTensorConfig(lm_head_positions="response")],
    ids=["shared_prompts", "response_head"],
)
def test_a_pass_whose_rows_have_no_response_token_still_trains(options, tied_model_dir):
    """A pass with nothing to score (a row without token_mask, alone in its pass) must still be in autograd:
    its loss is 0 with a graph, as on the padded path (it crashed backward: 'does not require grad')."""
    batch = grouped_batch(704, prompts=4, group=2, seed=5).select([5, 6, 7])
    assert batch["token_mask"][2].sum() == 0  # row 7 of the grouped batch has no response token
    rows_per_pass = [p.rows for p in microbatching.plan(batch, options, 2)]
    assert [2] in rows_per_pass, rows_per_pass
    reference, candidate = _backend(tied_model_dir, DTensorConfig(share_prompt_forward=False)), _backend(tied_model_dir, options)
    candidate.policy = reference.policy = attrs.evolve(reference.policy, train_micro_batch_size=2)
    expected = reference.train(batch, ConformanceNLLLoss())
    got = candidate.train(batch, ConformanceNLLLoss())
    for key in ("loss", "grad_norm", "tokens"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    worst = max((a - b).abs().max().item() for a, b in zip(weights(candidate).values(), weights(reference).values()))
    assert worst <= 1e-5


def test_by_default_training_passes_share_prompts_and_logprob_passes_keep_whole_rows():
    batch = grouped_batch(704, prompts=3, group=2, seed=1)

    def shared(options, scoring):
        return [p.shared is not None for p in microbatching.plan(batch, options, 4, scoring=scoring)]

    assert all(shared(DTensorConfig(), scoring=False)) and not any(shared(DTensorConfig(), scoring=True))
    assert all(shared(DTensorConfig(share_prompt_forward=True), scoring=True))
    for off in (DTensorConfig(share_prompt_forward=False), DTensorConfig(activation_checkpointing=True),
                DTensorConfig(sequence_packing=True)):
        assert not any(shared(off, scoring=False)), off


def test_the_default_falls_back_to_the_padded_path_when_the_probe_fails(tied_model_dir, monkeypatch, caplog):
    import reinforge.backends.training.dtensor.backend as backend_module

    def refuse(module, device):
        raise ReinforgeError("share_prompt_forward: TinyModel gives different logprobs (probe)")

    monkeypatch.setattr(backend_module, "check_shared_prompts", refuse)
    with caplog.at_level("WARNING"):
        backend = _backend(tied_model_dir, DTensorConfig())
    assert backend.options.share_prompt_forward is False
    assert "share_prompt_forward is off" in caplog.text and "gives different logprobs" in caplog.text
    with pytest.raises(ReinforgeError, match="gives different logprobs"):
        _backend(tied_model_dir, DTensorConfig(share_prompt_forward=True))


@pytest.mark.parametrize("share", [None, False], ids=["shared", "padded"])
def test_a_train_step_reports_the_positions_its_passes_computed(tied_model_dir, share):
    """`positions` / `head_positions` in train() metrics: the sum over the step's passes (benchmarks turn it into FLOPs)."""
    batch = grouped_batch(704, prompts=3, group=4, seed=2)
    options = DTensorConfig(share_prompt_forward=share)
    backend = _backend(tied_model_dir, options)
    metrics = backend.train(batch, ConformanceNLLLoss())
    plans = microbatching.plan(batch, backend.options, 3, scoring=False)
    assert metrics["positions"] == sum(p.positions for p in plans)
    assert metrics["head_positions"] == sum(p.head_positions(backend.options) for p in plans)
    if share is None:  # shared passes: each prompt once, the head at the response tokens only
        assert metrics["head_positions"] == batch["token_mask"].sum().item()
        assert metrics["positions"] < batch["input_ids"].shape[0] * batch["input_lengths"].max().item()
