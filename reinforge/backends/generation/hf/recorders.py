"""Hooks into transformers' `generate` loop: sampled-token logprobs and where each row stopped.

Why hooks instead of `output_logits=True` or a second forward pass: `generate` calls logits
processors once per step with the raw float32 logits of the step, and stopping criteria once per
step with the sequences so far. Recording there costs one log-softmax over `[b, V]` per step and
keeps only one step's distribution alive, where `output_logits` keeps all `G` steps (`[G, b, V]`,
gigabytes at a 150k vocabulary) and a teacher-forcing forward repeats the whole computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor, StoppingCriteria, StopStringCriteria

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class SampledTokenLogprobs(LogitsProcessor):
    """Records log p(sampled token) = log_softmax(raw_logits / temperature) at every step.

    The distribution is the RAW model distribution scaled by the temperature, not the top-p /
    top-k filtered one that the sampler actually drew from: the trainer recomputes logprobs as
    log_softmax(logits / T) over the full vocabulary and cannot reproduce the filtering, so this
    is the value that makes generator and trainer logprobs comparable (importance ratios, the
    logprob-mismatch metric). Greedy decoding passes temperature 1.

    It must run before any processor that changes the logits; `generate` places processors
    passed by the caller right after its own defaults and before the temperature / top-k / top-p
    warpers, and the backend configures no default processor.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._previous: torch.Tensor | None = None  # [b, V] logprobs of the last step
        self._values: list[torch.Tensor] = []  # one [b] per generated column, except the newest

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # input_ids  # [b, W + k]: its last column is the token drawn from the previous step's distribution
        if self._previous is not None:
            self._values.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        logits = scores.float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        self._previous = torch.log_softmax(logits, dim=-1)  # [b, V]
        return scores

    def result(self, sequences: torch.Tensor, generated: int) -> torch.Tensor:
        """Logprobs `# [b, generated]` of the last `generated` columns of `sequences  # [b, W + generated]`."""
        values = self._values[:generated]
        if len(values) < generated:  # the newest column has not been gathered yet
            assert self._previous is not None
            values.append(self._previous.gather(1, sequences[:, -1:]).squeeze(1))
        self._previous = None
        if not values:
            return torch.zeros(sequences.shape[0], 0, device=sequences.device)
        return torch.stack(values, dim=1)


class StopRecorder(StoppingCriteria):
    """Stops rows on stop token ids (eos included) or stop strings, and records the step each row stopped at.

    The stop step is what gives each response its length: after it `generate` fills the row with
    the pad id, which a model may also emit as an ordinary token, so the length cannot be read
    back from the ids.

    transformers' `StopStringCriteria` matches the end of the whole sequence, prompt included, so
    a stop string "\n\n" would fire on the first generated "\n" after a prompt ending in "\n".
    Other engines only search the response; to agree with them a string hit is confirmed by
    decoding that row's response, which happens once per stopped row, not once per token.
    """

    def __init__(
        self,
        prompt_width: int,
        batch_size: int,
        stop_ids: torch.Tensor,
        strings: StopStringCriteria | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        self.prompt_width = prompt_width
        self.stop_ids = stop_ids  # [S] long, on the model's device
        self.strings = strings
        self.tokenizer = tokenizer
        self.stopped_at = torch.zeros(batch_size, dtype=torch.long, device=stop_ids.device)  # [b]; 0 = running

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
        done = torch.isin(input_ids[:, -1], self.stop_ids)  # [b]
        if self.strings is not None:
            done |= self._string_hits(input_ids, scores)
        step = input_ids.shape[1] - self.prompt_width  # tokens generated so far, the stop token included
        self.stopped_at.masked_fill_(done & (self.stopped_at == 0), step)
        return done

    def _string_hits(self, input_ids: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        assert self.strings is not None and self.tokenizer is not None
        hits = self.strings(input_ids, scores) & (self.stopped_at == 0)  # [b]
        for row in hits.nonzero().flatten().tolist():
            response = self.tokenizer.decode(input_ids[row, self.prompt_width :].tolist())
            if not any(stop in response for stop in self.strings.stop_strings):
                hits[row] = False  # the match reaches back into the prompt
        return hits
