"""Build a Megatron-core `GPTModel` (wrapped in Megatron's DDP) from a Hugging Face folder, and read it back.

Loading: the Hugging Face weights are read on every rank (safetensors map lazily), converted to
Megatron names (`convert.hf_to_megatron`) and each rank copies in its tensor-parallel slice of
the layers of its pipeline stage.
Reading back (`gather_hf`): each parameter is all-gathered over the tensor-parallel ranks, joined
(`convert.tp_unshard`), sent from its pipeline stage to the others (a broadcast over the pipeline
group) and converted to Hugging Face tensors one parameter at a time, so refit never holds a
second copy of the whole model.

Pipeline stages: stage s holds decoder layers [s*L/pp, (s+1)*L/pp) (Megatron numbers them from 0
again on each stage; `global_named_parameters` gives the model-wide names), the first stage the
embedding, the last the final norm and the output layer (with tied embeddings a copy of the
embedding that Megatron keeps equal to it: its gradients are summed with the embedding's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from reinforge.backends.training.megatron.config import MegatronConfig
from reinforge.backends.training.megatron.convert import (
    ModelSpec,
    hf_to_megatron,
    local_spec_name,
    megatron_tensor_to_hf,
    split_dim,
    spec_from_hf_config,
    tp_shard,
    tp_unshard,
)
from reinforge.backends.training.megatron.runtime import MegatronGrid
from reinforge.core.errors import ReinforgeError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_LOCAL_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")  # a stage-local layer index


def check_layout(spec: ModelSpec, options: MegatronConfig) -> None:
    """Fail early, naming the numbers, when the model cannot be split as asked."""
    tp = options.tensor_parallel_size
    for what, value in (
        ("attention heads", spec.num_attention_heads),
        ("key/value heads", spec.num_key_value_heads),
        ("vocabulary size", spec.vocab_size),
        ("MLP width", spec.ffn_hidden_size),
    ):
        if value % tp:
            raise ReinforgeError(
                f"backend_cfg.tensor_parallel_size={tp} does not divide the model's {what} ({value}); choose a divisor"
            )
    pp = options.pipeline_parallel_size
    if spec.num_layers % pp:
        raise ReinforgeError(
            f"backend_cfg.pipeline_parallel_size={pp} does not divide the model's {spec.num_layers} decoder layers; "
            "choose a divisor (every stage holds the same number of layers)"
        )


def use_transformer_engine(options: MegatronConfig, device: torch.device) -> bool:
    if options.transformer_impl == "local":
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        if options.transformer_impl == "transformer_engine":
            raise ReinforgeError(
                "backend_cfg.transformer_impl is transformer_engine but Transformer Engine is not installed; "
                "install transformer-engine[pytorch] or use transformer_impl: local"
            ) from None
        return False
    return device.type == "cuda"


def transformer_config(spec: ModelSpec, options: MegatronConfig, precision: str, device: torch.device) -> Any:
    """Megatron's TransformerConfig for `spec` (dropout off: RL trainers match the sampler's logprobs)."""
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    dtype = DTYPES[precision]
    recompute: dict[str, Any] = {}
    if options.activation_recomputation == "full":
        recompute = {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    elif options.activation_recomputation == "selective":
        recompute = {"recompute_granularity": "selective"}
    on_gpu = device.type == "cuda"
    return TransformerConfig(
        num_layers=spec.num_layers,
        hidden_size=spec.hidden_size,
        num_attention_heads=spec.num_attention_heads,
        num_query_groups=spec.num_key_value_heads,
        kv_channels=spec.head_dim,
        ffn_hidden_size=spec.ffn_hidden_size,
        add_bias_linear=False,
        add_qkv_bias=spec.qkv_bias,
        gated_linear_unit=True,
        activation_func=F.silu,
        normalization="RMSNorm",
        layernorm_epsilon=spec.norm_eps,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        attention_softmax_in_fp32=True,
        tensor_model_parallel_size=options.tensor_parallel_size,
        pipeline_model_parallel_size=options.pipeline_parallel_size,
        context_parallel_size=options.context_parallel_size,
        sequence_parallel=options.sequence_parallel,
        use_cpu_initialization=not on_gpu,
        # The weights come from the checkpoint, but initialisation also tags tensor-parallel parameters
        # (`tensor_model_parallel`), which the gradient norm needs to count each shard exactly once.
        perform_initialization=True,
        # Fused kernels need CUDA (and apex/TE); the unfused paths compute the same function.
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        # Microbatches differ in rows (the last one of a batch, a data-parallel rank's dummy pass) and in
        # width between calls: with pipeline stages, each send is preceded by its shape. Megatron refuses
        # variable lengths with its default MoE dispatcher ("allgather") even without experts; the
        # setting is inert for this dense model.
        variable_seq_lengths=options.pipeline_parallel_size > 1,
        moe_token_dispatcher_type="alltoall",
        **recompute,
    )


def build_gpt(spec: ModelSpec, options: MegatronConfig, precision: str, grid: MegatronGrid) -> Any:
    """An uninitialised GPTModel of this rank's slice and pipeline stage (weights are loaded next)."""
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    device = grid.device
    config = transformer_config(spec, options, precision, device)
    if use_transformer_engine(options, device):
        layer_spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        if options.sequence_parallel:
            raise ReinforgeError(
                "backend_cfg.sequence_parallel needs Transformer Engine layers (a GPU with transformer-engine "
                "installed); the local layers' norms do not support it"
            )
        layer_spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec,
        vocab_size=spec.vocab_size,
        max_sequence_length=spec.max_position_embeddings,
        share_embeddings_and_output_weights=spec.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=spec.rope_theta,
        rope_scaling=spec.rope_scaling_factor is not None,
        rope_scaling_factor=spec.rope_scaling_factor or 8.0,
        parallel_output=True,
        pre_process=grid.is_first_stage,
        post_process=grid.is_last_stage,
    )
    return model.to(device)


def load_hf_weights(gpt: torch.nn.Module, model_name: str, spec: ModelSpec, grid: MegatronGrid) -> None:
    """Copy this rank's slice of the Hugging Face weights into `gpt`'s parameters (exactly, then cast to their dtype)."""
    from safetensors import safe_open

    files = _safetensors_files(model_name)
    hf: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                hf[key] = handle.get_tensor(key)
    try:
        full = hf_to_megatron(hf, spec)
    except KeyError as exc:
        raise ReinforgeError(
            f"the weights of '{model_name}' lack {exc}; is it a complete {spec.model_type} checkpoint?"
        ) from None
    if spec.tie_word_embeddings:
        full["output_layer.weight"] = full["embedding.word_embeddings.weight"]
    with torch.no_grad():
        for key, param in global_named_parameters(gpt):
            piece = tp_shard(key, full[key], grid.tp_rank, grid.tp_size)
            if tuple(piece.shape) != tuple(param.shape):
                raise ReinforgeError(
                    f"'{model_name}': {key} has shape {tuple(piece.shape)} on tensor-parallel rank {grid.tp_rank}, "
                    f"the Megatron model expects {tuple(param.shape)}"
                )
            param.copy_(piece)


def _safetensors_files(model_name: str) -> list[Any]:
    from pathlib import Path

    folder = Path(model_name)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(model_name, allow_patterns=["*.safetensors", "*.json"]))
        except Exception as exc:  # noqa: BLE001 - hub errors have many types; all mean "cannot fetch"
            raise ReinforgeError(f"cannot fetch the weights of '{model_name}' ({exc}); check policy.model_name") from None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ReinforgeError(
            f"'{folder}' has no .safetensors weights; the megatron backend reads safetensors checkpoints"
        )
    return files


def global_named_parameters(gpt: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """This stage's parameters under model-wide local-spec names (`decoder.layers.<global index>.…`)."""
    layers = getattr(gpt.decoder, "layers", [])
    for name, param in gpt.named_parameters():
        key = local_spec_name(name)
        match = _LOCAL_LAYER.match(key)
        if match:  # Megatron's layer_number is the 1-based model-wide index of the stage's layer
            key = f"decoder.layers.{layers[int(match.group(1))].layer_number - 1}.{match.group(2)}"
        yield key, param



def gather_hf(gpt: torch.nn.Module, spec: ModelSpec, grid: MegatronGrid) -> Iterator[tuple[str, torch.Tensor]]:
    """Full tensors under Hugging Face names, one parameter at a time, in model order, on every rank.

    Collective: each parameter is all-gathered over the tensor-parallel ranks, then (with several
    pipeline stages) broadcast from its stage to the others. A tied model's output layer is
    skipped: its Hugging Face name is the embedding's.
    """
    mine = [
        (key, param)
        for key, param in global_named_parameters(gpt)
        if not (key == "output_layer.weight" and spec.tie_word_embeddings)
    ]
    if grid.pp_size == 1:
        for key, param in mine:
            yield from megatron_tensor_to_hf(key, _tp_full(key, param, grid), spec)
        return
    # Every stage learns what every other stage holds (names, full shapes, dtypes), then all
    # walk the stages in order: the owner gathers a tensor and broadcasts it to the others.
    plan = [(key, _full_shape(key, param, grid), param.dtype) for key, param in mine]
    plans: list[Any] = [None] * grid.pp_size
    dist.all_gather_object(plans, plan, group=grid.group("pp"))
    for stage, entries in enumerate(plans):
        for index, (key, shape, dtype) in enumerate(entries):
            if stage == grid.pp_rank:
                full = _tp_full(key, mine[index][1], grid).contiguous()
            else:
                full = torch.empty(shape, dtype=dtype, device=grid.device)
            yield from megatron_tensor_to_hf(key, grid.broadcast_from_stage(full, stage), spec)


def _full_shape(key: str, param: torch.Tensor, grid: MegatronGrid) -> tuple[int, ...]:
    shape = list(param.shape)
    dim = split_dim(key)
    if dim is not None:
        shape[dim] *= grid.tp_size
    return tuple(shape)


def _tp_full(key: str, param: torch.Tensor, grid: MegatronGrid) -> torch.Tensor:
    """The full tensor of `param` (an all-gather over the tensor-parallel ranks when it is split)."""
    local = param.detach()
    if grid.tp_size == 1 or split_dim(key) is None:
        return local
    pieces = [torch.empty_like(local) for _ in range(grid.tp_size)]
    dist.all_gather(pieces, local.contiguous(), group=grid.group("tp"))
    return tp_unshard(key, pieces)


__all__ = ["DTYPES", "build_gpt", "check_layout", "gather_hf", "global_named_parameters", "load_hf_weights", "spec_from_hf_config"]
