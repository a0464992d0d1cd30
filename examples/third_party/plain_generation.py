"""A minimal generation backend, written against reinforge's public API only (`reinforge.backends.kit`).

It samples one token at a time from a plain transformers model (no KV cache: short and slow), at the
requested temperature, and reports each token's logprob under that temperature — what the
trainer computes, so the two agree. Registered as `plain_torch` by `third_party_plugins.py`.
"""

from __future__ import annotations

from typing import Any

import torch

import reinforge as rf
from reinforge.backends import kit


class PlainGeneration:
    def __init__(self, model: Any, options: Any = None, *, generation: Any = None, seed: int = 0) -> None:
        # model: the run's ModelConfig; generation: its sampling defaults (each call brings its own SamplingParams)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.max_total_length = model.max_total_sequence_length
        self.model = AutoModelForCausalLM.from_pretrained(model.model_name, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(model.tokenizer_name or model.model_name)
        self.stop_ids = set(kit.eos_token_ids(model.model_name, tokenizer))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        self.decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
        self.seed = seed

    @torch.no_grad()
    def generate(self, batch: rf.Batch, sampling: rf.SamplingParams) -> rf.Batch:
        prompts = kit.prompt_lists(batch, sampling, self.max_total_length, backend="plain_torch")
        if sampling.top_p < 1.0 or sampling.top_k is not None:
            raise rf.ReinforgeError("the plain_torch backend samples from the whole distribution: use top_p=1, top_k=null")
        seeds = kit.sample_seeds(self.seed if sampling.seed is None else sampling.seed, len(prompts), sampling.n)
        completions = [self._sample(prompts[i // sampling.n], sampling, seed) for i, seed in enumerate(seeds)]
        return kit.assemble_batch(batch, prompts, completions, sampling.n, self.pad_id)

    def _sample(self, prompt: list[int], sampling: rf.SamplingParams, seed: int) -> kit.Completion:
        generator = torch.Generator().manual_seed(seed)
        stops = self.stop_ids | set(sampling.stop_token_ids)
        ids, response, logprobs = torch.tensor([prompt]), [], []
        for _ in range(sampling.max_new_tokens):
            logits = self.model(ids).logits[0, -1].float()  # [V]
            scaled = torch.log_softmax(logits / (sampling.temperature or 1.0), dim=-1)  # [V]
            token = int(logits.argmax()) if sampling.greedy else int(torch.multinomial(scaled.exp(), 1, generator=generator))
            response.append(token)
            logprobs.append(float(scaled[token]))
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if token in stops:
                return kit.Completion(response=response, logprobs=logprobs, truncated=False)
        done = kit.Completion(response=response, logprobs=logprobs, truncated=True)
        return kit.apply_stop_strings(done, sampling.stop_strings, self.decode)

    def update_weights(self, named_tensors: Any) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name in params:  # a tied lm_head arrives under its own name too
                    params[name].copy_(tensor)

    def sleep(self) -> None:  # CPU only: nothing to free
        pass

    def wake(self) -> None:
        pass

    def shutdown(self) -> None:
        self.model = None
