"""The conversion over 300 random layouts, against an independent head-by-head reimplementation.

The reference builds each tensor-parallel rank's fused QKV and fc1 slice row by row from the
Hugging Face tensors (which query heads, key head and value head a rank owns), the way Megatron's
attention reads them, instead of through reshapes; float64 values so every element is distinct.
"""

from __future__ import annotations

import random

import torch

from reinforge.backends.training.megatron.convert import (
    ModelSpec,
    fuse_qkv,
    megatron_tensor_to_hf,
    split_qkv,
    tp_shard,
    tp_unshard,
)


def _random_spec(rng: random.Random) -> tuple[ModelSpec, int]:
    tp = rng.choice([1, 2, 4])
    groups = tp * rng.randint(1, 3)
    heads = groups * rng.randint(1, 4)
    head_dim = rng.choice([1, 2, 3, 8])
    spec = ModelSpec(
        model_type="qwen2", num_layers=1, hidden_size=rng.randint(1, 6), num_attention_heads=heads,
        num_key_value_heads=groups, head_dim=head_dim, ffn_hidden_size=tp * rng.randint(1, 4), vocab_size=tp * 3,
        tie_word_embeddings=True, qkv_bias=True, norm_eps=1e-6, rope_theta=1e4, rope_scaling_factor=None,
        max_position_embeddings=8,
    )  # fmt: skip
    return spec, tp


def _rank_qkv_by_heads(q, k, v, spec: ModelSpec, rank: int, tp: int) -> torch.Tensor:  # noqa: ANN001
    """Rank `rank`'s fused rows, head by head: for each of its groups, its query heads, then its key, then its value."""
    d, per = spec.head_dim, spec.heads_per_group
    groups_per_rank = spec.num_key_value_heads // tp
    rows = []
    for group in range(rank * groups_per_rank, (rank + 1) * groups_per_rank):
        for head in range(group * per, (group + 1) * per):
            rows.append(q[head * d : (head + 1) * d])
        rows.append(k[group * d : (group + 1) * d])
        rows.append(v[group * d : (group + 1) * d])
    return torch.cat(rows)


def test_random_layouts_match_the_head_by_head_reference():
    rng = random.Random(0)
    for case in range(300):
        spec, tp = _random_spec(rng)
        generator = torch.Generator().manual_seed(case)
        hidden, d = spec.hidden_size, spec.head_dim
        q = torch.randn(spec.num_attention_heads * d, hidden, generator=generator, dtype=torch.float64)
        k = torch.randn(spec.num_key_value_heads * d, hidden, generator=generator, dtype=torch.float64)
        v = torch.randn(spec.num_key_value_heads * d, hidden, generator=generator, dtype=torch.float64)
        bias = [torch.randn(t.shape[0], generator=generator, dtype=torch.float64) for t in (q, k, v)]
        name = "decoder.layers.0.self_attention.linear_qkv.weight"
        fused = fuse_qkv(q, k, v, spec)
        fused_bias = fuse_qkv(*bias, spec)
        for rank in range(tp):
            assert torch.equal(tp_shard(name, fused, rank, tp), _rank_qkv_by_heads(q, k, v, spec, rank, tp)), case
            assert torch.equal(
                tp_shard(name.replace("weight", "bias"), fused_bias, rank, tp), _rank_qkv_by_heads(*bias, spec, rank, tp)
            ), case
        pieces = [tp_shard(name, fused, rank, tp) for rank in range(tp)]
        back = dict(megatron_tensor_to_hf(name, tp_unshard(name, pieces), spec))
        assert [torch.equal(back[f"model.layers.0.self_attn.{p}_proj.weight"], t) for p, t in zip("qkv", (q, k, v))] == [True] * 3
        assert all(torch.equal(a, b) for a, b in zip(split_qkv(fused_bias, spec), bias)), case

        # fc1: rank r holds rows [r*F/tp, (r+1)*F/tp) of gate, then the same rows of up.
        ffn = spec.ffn_hidden_size
        gate = torch.randn(ffn, hidden, generator=generator, dtype=torch.float64)
        up = torch.randn(ffn, hidden, generator=generator, dtype=torch.float64)
        fc1_name = "decoder.layers.0.mlp.linear_fc1.weight"
        fc1 = torch.cat([gate, up])
        size = ffn // tp
        for rank in range(tp):
            expected = torch.cat([gate[rank * size : (rank + 1) * size], up[rank * size : (rank + 1) * size]])
            assert torch.equal(tp_shard(fc1_name, fc1, rank, tp), expected), case
        back = dict(megatron_tensor_to_hf(fc1_name, tp_unshard(fc1_name, [tp_shard(fc1_name, fc1, r, tp) for r in range(tp)]), spec))
        assert torch.equal(back["model.layers.0.mlp.gate_proj.weight"], gate) and torch.equal(back["model.layers.0.mlp.up_proj.weight"], up)

        # Row-parallel: rank r holds columns [r*n/tp, (r+1)*n/tp).
        proj = torch.randn(hidden, spec.num_attention_heads * d, generator=generator, dtype=torch.float64)
        proj_name = "decoder.layers.0.self_attention.linear_proj.weight"
        width = proj.shape[1] // tp
        for rank in range(tp):
            assert torch.equal(tp_shard(proj_name, proj, rank, tp), proj[:, rank * width : (rank + 1) * width]), case
        assert torch.equal(tp_unshard(proj_name, [tp_shard(proj_name, proj, r, tp) for r in range(tp)]), proj)
