"""The seams between the algorithm and everything that does heavy work.

Each seam is a small `typing.Protocol`, so that an algorithm can generate, score and train
without knowing which engine runs underneath or where it runs (one process, or a Ray worker
group). Tokens in, tokens out: the driver applies the chat template and tokenizes once;
backends never see text, except environments, which judge decoded responses.

Shape conventions shared by every seam (see `reinforge.core.batch` for the batch type):

- `B` is the number of rows, `T` the padded sequence length, `V` the vocabulary size.
- Sequences are right-padded. `input_ids  # [B, T]` holds prompt + response;
  `input_lengths  # [B]` the unpadded length of each row.
- Per-token arrays are aligned with `input_ids`: `logprobs[:, t]` is log p(input_ids[:, t] | input_ids[:, :t]),
  so column 0 (no prefix) is always 0, and so are the padded columns.
- `token_mask  # [B, T]` is 1 on the tokens a loss counts (the generated ones), 0 elsewhere;
  `sample_mask  # [B]` scales whole rows (0 drops a row from the loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    import torch

    from reinforge.core.batch import Batch
    from reinforge.core.run import RunParts
    from reinforge.core.records import RecordFormat
    from reinforge.core.run_config import PolicyConfig
    from reinforge.core.sampling import SamplingParams

NamedTensors = Iterable[tuple[str, "torch.Tensor"]]


@runtime_checkable
class GenerationBackend(Protocol):
    """Produces responses for tokenized prompts; hides the engine (HF generate, vLLM, SGLang, ...).

    The rollout does not need to know how or where generation runs, only that token ids go in
    and token ids with their logprobs come out.
    """

    def generate(self, batch: Batch, sampling: SamplingParams) -> Batch:
        """Sample responses for `batch["input_ids"]  # [B, P]` (right-padded prompts, `input_lengths  # [B]`).

        Returns a batch of `B * sampling.n` rows (each prompt's samples adjacent) with
        `output_ids  # [B*n, T]` (prompt + response, right-padded with the pad id),
        `prompt_lengths`, `generation_lengths`, `sequence_lengths  # [B*n]`,
        `generation_logprobs  # [B*n, T]` (aligned with `output_ids`, 0 outside the response,
        computed under the sampling temperature exactly as the trainer computes them) and
        `truncated  # [B*n] bool` (max_new_tokens reached without a stop). Per-sample lists of
        the input batch are repeated alongside.
        """
        ...

    def update_weights(self, named_tensors: NamedTensors) -> None:
        """Load Hugging Face-named full tensors into the live engine, in place (refit)."""
        ...

    def sleep(self) -> None:
        """Free the engine's device memory (weights and KV cache) while training runs on the same devices."""
        ...

    def wake(self) -> None:
        """Undo `sleep`."""
        ...

    def shutdown(self) -> None:
        """Release every resource; the backend is unusable afterwards."""
        ...


@runtime_checkable
class LossFn(Protocol):
    """Turns per-token logprobs of the trained policy into a scalar loss for one microbatch.

    The training backend splits a global batch into microbatches and calls the loss once per
    microbatch. The loss divides by the *global* counts (over every microbatch and every
    data-parallel rank), so that the sum of microbatch losses is the loss of the whole batch
    whatever the split. Metric values follow the same rule: they are summed over microbatches
    and ranks, except keys ending in `_min` / `_max`, which are reduced by min / max.

    A loss reads `logprobs` only where `token_mask` is 1: elsewhere a backend may hand it 0
    (the `dtensor` backend runs the output layer at response positions only when it shares a
    prompt's pass among its rows, which it does by default in training).
    """

    def __call__(
        self,
        logprobs: torch.Tensor,  # [B, T], aligned with batch["input_ids"]
        batch: Batch,
        global_valid_tokens: torch.Tensor,  # scalar: sum of token_mask * sample_mask over the global batch
        global_valid_seqs: torch.Tensor,  # scalar: sum of sample_mask over the global batch
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


@runtime_checkable
class TrainingBackend(Protocol):
    """Owns the policy's weights and optimizer; hides the parallelism (FSDP2/TP, Megatron) and the device."""

    def train(self, batch: Batch, loss_fn: LossFn, temperature: float = 1.0) -> dict[str, float]:
        """One optimizer step over `batch` (microbatching and gradient accumulation inside).

        Logits are divided by `temperature` (the sampling temperature) before the log-softmax, so
        that trainer and generator logprobs agree. Returns at least `loss`, `grad_norm`, `lr`,
        `tokens`, `microbatches`, plus the loss function's metrics.
        """
        ...

    def logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Per-token logprobs `# [B, T]` of `batch["input_ids"]` under the current policy, logits / temperature."""
        ...

    def reference_logprobs(self, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
        """Like `logprobs`, under the frozen reference policy (loaded on first use)."""
        ...

    def named_weights(self, bucket_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Full (unsharded) tensors with Hugging Face names, grouped in buckets of about `bucket_bytes`."""
        ...

    def save(self, directory: str) -> None:
        """Write model, optimizer, scheduler and RNG state (torch.distributed.checkpoint)."""
        ...

    def load(self, directory: str) -> None:
        """Restore what `save` wrote."""
        ...

    def export_hf(self, directory: str) -> None:
        """Write a Hugging Face folder (safetensors, config, tokenizer) that `from_pretrained` loads."""
        ...

    def offload(self) -> None:
        """Move weights and optimizer state off the accelerator (colocated generation)."""
        ...

    def onload(self) -> None:
        """Undo `offload`."""
        ...

    def shutdown(self) -> None:
        """Release every resource."""
        ...


@attrs.define(kw_only=True, frozen=True)
class EnvironmentStep:
    """What an environment answers for a batch of conversations (one entry per conversation)."""

    rewards: list[float]
    # A message to append to the conversation ({"role": ..., "content": ...}), or None when done.
    observations: list[Mapping[str, Any] | None]
    done: list[bool]
    # Aggregated over the batch (means, counts); logged as env/<key>.
    metrics: dict[str, float] = attrs.field(factory=dict)
    # Per-conversation extras, kept with the samples. One key has a meaning of its own:
    # "extracted_answer" (str), the final answer as the environment read it; `reinforge eval`'s
    # majority vote (cons@k) compares these strings (without it, the last 64 characters of the reply).
    info: list[dict[str, Any]] = attrs.field(factory=list)
    # Whether each conversation's answer is right, as the environment judges it (one per
    # conversation), or None when the environment does not say. Accuracy (train/accuracy,
    # val/accuracy, pass@k, `reinforge eval`) counts these; without them a reward >= 1 counts as
    # right, which is wrong for shaped or partial-credit rewards. In multi-turn rollouts the last
    # turn that reports it decides.
    correct: list[bool] | None = None
    # Per conversation, the stop strings of its next turn (NeMo-RL's name), e.g. ["</tool_call>"]
    # while a tool exchange is open; an entry of None, or None for all, keeps the run's own
    # (policy.generation.stop_strings). The turn loop groups rows by stop set, one generation call each.
    next_stop_strings: list[Sequence[str] | None] | None = None
    # Per conversation, named parts of this turn's reward ({"answer": 1.0, "format": -0.1}), logged as
    # train/reward/<name>_mean (summed over turns, like the reward); None when the environment does not say.
    reward_components: list[Mapping[str, float]] | None = None


@runtime_checkable
class Environment(Protocol):
    """Scores conversations; hides the verifier, the tool, or the game.

    Single-turn environments finish in one step (`done` all True). Multi-turn ones return
    observations that the driver appends to the conversation before generating again: the
    driver keeps the token ids the model generated, and adds between turns only what the chat
    template puts there (the closing of the assistant turn, the observation, the next generation
    prompt), so the trainer sees exactly the tokens the model sampled and saw.

    Contract (checked by the guard every environment runs behind): one reward, observation
    and done flag per conversation, in the order given; rewards are finite numbers; an
    observation is None or a `{"role", "content"}` mapping with string values; `correct`,
    `next_stop_strings` and `reward_components`, when given, have one entry per conversation
    too, and reward components are finite. Report `correct` whenever the reward is not simply 1
    for a right answer (shaped, partial credit, penalties), and put the answer you graded under
    `info[i]["extracted_answer"]` so that majority voting compares answers, not text.

    State lives in the conversation and its `metadata`, never in the environment object: an
    environment must give the same answer whenever it sees the same conversation again, on any
    worker. Each turn the driver may send a conversation to a different Ray actor
    (`cluster.environment_workers` splits every batch anew), and the guard may retry one
    conversation alone after a failed batch call. So a game replays the moves of the
    conversation from its starting position in `metadata` (as `sliding_puzzle` does), and a
    tool answers from the call in the last assistant message. Caches are fine; memory is not.
    """

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        """Judge each conversation (a list of {"role", "content"} messages) given its metadata (e.g. the gold answer)."""
        ...

    def shutdown(self) -> None:
        """Release workers and pools."""
        ...


@runtime_checkable
class Logger(Protocol):
    """Receives metrics; hides where they go (console, JSONL, TensorBoard, W&B, MLflow)."""

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Algorithm(Protocol):
    """Drives the backends for one training step; the `Trainer` owns the loop around it.

    The composition root (`reinforge.Trainer`) reads what the algorithm needs (`needs_generation`,
    `needs_environment`, `needs_reference`), builds those parts, turns the records of the training
    and validation data into the algorithm's items (`record_format`), and calls `setup` once.
    The loop then hands `train_step` one batch of `records_per_step` items per step, calls
    `validate` on the schedule of its `LoopConfig` (the algorithm owns no schedule), and saves
    `state_dict()` with every checkpoint. Registered algorithm plugins are constructed from a
    whole YAML run config (see `reinforge.core.constructors.AlgorithmClass`).
    """

    needs_generation: bool  # build a generation backend (rollouts)
    needs_environment: bool  # build an environment (rewards)
    needs_reference: bool  # the training backend keeps a frozen reference policy
    # What `train_step` receives, made from the records by `reinforge.data.preparation`: tokenized prompts,
    # encoded conversations or preference pairs. An algorithm that needs other items defines instead
    # `prepare_data(records, tokenizer, *, data, policy, source) -> (items, stats)`, which then takes over.
    record_format: RecordFormat
    # Rollouts generated ahead by a producer thread (asynchronous GRPO): the most training steps a group's
    # generating weights may lag the weights that train it. None = synchronous rollouts (and no producer).
    async_rollouts_max_age: int | None

    def records_per_step(self, policy: PolicyConfig) -> int:
        """Items one step consumes when the loop config does not say (e.g. prompts per step, or the global batch).

        Optional beside it: `samples_per_step(records) -> int`, the rows one step trains on when they outnumber
        the records (GRPO: records x generations); a policy built without `train_global_batch_size` takes it.
        """
        ...

    def setup(self, run: RunParts) -> None:
        """Receive the run's built parts (`reinforge.core.run.RunParts`)."""
        ...

    def train_step(self, step: int, prompts: list[Any]) -> dict[str, float]:
        """One step on a batch of items; returns metrics (`train/...`)."""
        ...

    def validate(self, step: int) -> dict[str, float]:
        """Evaluate on the validation items (`run.val_prompts`); returns metrics (`val/...`), {} without any."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue exactly (saved with each checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
