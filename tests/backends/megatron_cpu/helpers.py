"""Shared by the megatron tests: a tiny Llama built offline, policies, and one-thread execution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reinforge.core.run_config import OptimizerConfig, PolicyConfig

# Llama 3.1's RoPE scaling, so the test also checks Megatron's `rope_scaling` against transformers'.
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}


def build_tiny_llama(qwen_dir: Path, out: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama (GQA 4/2 heads, untied lm_head, llama3 RoPE scaling) with the kit's tokenizer, saved offline."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    config = LlamaConfig(
        vocab_size=704, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 500000.0, **LLAMA3_ROPE},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # non-trivial norms, so a swapped norm weight would show
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def policy(model_dir: Path, **fields: Any) -> PolicyConfig:
    settings: dict[str, Any] = {
        "model_name": str(model_dir),
        "precision": "float32",
        "train_global_batch_size": 8,
        "train_micro_batch_size": 2,
        "logprob_batch_size": 4,
        "max_total_sequence_length": 64,
        "max_grad_norm": None,
        "optimizer": OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.0),
    }
    settings.update(fields)
    return PolicyConfig(**settings)
