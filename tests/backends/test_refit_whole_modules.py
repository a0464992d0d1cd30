"""Refit tensors reach vLLM a whole module at a time, however the sender cut its buckets.

vLLM materialises a layer when its reload ends; a fused module that got only part of its tensors in
one call (q_proj now, v_proj in the next bucket) is rebuilt with the rest uninitialised. Measured on
SmolLM2-135M before the fix: a refit of the unchanged weights in three 256 MiB buckets moved vLLM's
sampled-token logprobs 4.2 nats (mean) away from the trainer's, and its replies were gibberish.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from reinforge.backends.generation.engine_common import WholeModules, engine_module


def llama_names(layers: int = 2, bias: bool = False) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(layers):
        prefix = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            names.append(f"{prefix}.self_attn.{proj}.weight")
            if bias and proj != "o_proj":
                names.append(f"{prefix}.self_attn.{proj}.bias")
        names += [f"{prefix}.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
        names += [f"{prefix}.input_layernorm.weight", f"{prefix}.post_attention_layernorm.weight"]
    return names


def test_engine_modules_by_hand():
    assert engine_module("model.layers.3.self_attn.k_proj.bias") == "model.layers.3.self_attn.qkv_proj"
    assert engine_module("model.layers.3.mlp.up_proj.weight") == "model.layers.3.mlp.gate_up_proj"
    assert engine_module("model.layers.3.mlp.down_proj.weight") == "model.layers.3.mlp.down_proj"
    assert engine_module("model.embed_tokens.weight") == "model.embed_tokens"


@pytest.mark.parametrize("bias", [False, True], ids=["llama", "qwen2-biases"])
def test_every_bucketing_releases_each_module_whole_and_everything_once(bias):
    names = llama_names(bias=bias)
    tensors = [(name, torch.full((1,), float(i))) for i, name in enumerate(names)]
    generator = torch.Generator().manual_seed(0)
    for trial in range(200):
        order = torch.randperm(len(tensors), generator=generator).tolist() if trial % 2 else list(range(len(tensors)))
        cuts = sorted(torch.randint(0, len(tensors) + 1, (int(torch.randint(0, 6, (1,), generator=generator)),), generator=generator).tolist())
        buffer = WholeModules(names)
        released: list[str] = []
        for start, stop in itertools.pairwise([0, *cuts, len(tensors)]):
            call = buffer.release([tensors[i] for i in order[start:stop]])
            modules = {}
            for name, _ in call:
                modules.setdefault(engine_module(name), set()).add(name)
            for module, got in modules.items():  # each module in a call is complete
                assert got == {n for n in names if engine_module(n) == module}, (trial, module)
            released += [name for name, _ in call]
        assert sorted(released) == sorted(names) and buffer.missing() == []


def test_a_module_left_incomplete_is_named():
    names = llama_names(layers=1)
    buffer = WholeModules(names)
    assert buffer.release([("model.layers.0.self_attn.q_proj.weight", torch.zeros(1))]) == []
    assert buffer.missing() == ["model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"]
    single = buffer.release([("model.layers.0.mlp.down_proj.weight", torch.zeros(1))])  # a one-tensor module goes at once
    assert [name for name, _ in single] == ["model.layers.0.mlp.down_proj.weight"]


def test_unknown_checkpoint_names_hold_nothing():
    buffer = WholeModules(None)
    weights = [("model.layers.0.self_attn.q_proj.weight", torch.zeros(1))]
    assert buffer.release(weights) == weights and buffer.missing() == []
