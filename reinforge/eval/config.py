"""The evaluation config: a model folder, a generation backend, a dataset, a metric."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import doc, plugin_options
from reinforge.core.model_config import ModelConfig
from reinforge.core.run_config import ClusterConfig, DataConfig, EnvConfig, GenerationConfig, check_seed
from reinforge.core.sampling import check_stop_strings, check_stop_token_ids, top_k_off


@attrs.define(kw_only=True, frozen=True)
class EvalSettings:
    metric: Literal["pass@k", "avg@k", "cons@k"] = doc("pass@k (unbiased), avg@k (mean correctness), cons@k (majority vote)", default="pass@k")
    num_tests_per_prompt: int = doc("samples per problem (n)", default=1, validator=v.gt(0))
    k_value: int = doc("k of the metric (<= num_tests_per_prompt)", default=1, validator=v.gt(0))
    batch_size: int = doc("problems per generation call", default=32, validator=v.gt(0))
    seed: int = doc("sampling seed", default=42, validator=check_seed)
    save_path: str | None = doc("write per-sample results as JSONL here (null = do not)", default=None)
    max_turns: int = doc(
        "environment turns per sample (1 = single turn; multi-turn environments such as calculator need more)",
        default=1,
        validator=v.ge(1),
    )

    def __attrs_post_init__(self) -> None:
        if self.k_value > self.num_tests_per_prompt:
            raise ValueError(f"k_value ({self.k_value}) cannot exceed num_tests_per_prompt ({self.num_tests_per_prompt})")


@attrs.define(kw_only=True, frozen=True)
class EvalGenerationConfig:
    model_name: str = doc("Hugging Face model folder (e.g. an export of `reinforge convert`) or hub name")
    tokenizer_name: str | None = doc("tokenizer folder (default: model_name)", default=None)
    precision: Literal["float32", "bfloat16"] = doc("dtype", default="bfloat16")
    max_total_sequence_length: int = doc("prompt + response tokens", default=2048, validator=v.gt(0))
    backend: str = doc("generation backend plugin", default="vllm")
    backend_cfg: Any = plugin_options("generation_backend", "backend", "options of the generation backend")
    temperature: float = doc("0 = greedy", default=0.0, validator=v.ge(0))
    top_p: float = doc("nucleus mass", default=1.0, validator=[v.gt(0), v.le(1)])
    top_k: int | None = doc("top-k (null, 0 or -1 = off)", default=None, converter=top_k_off)
    max_new_tokens: int = doc("response tokens", default=2048, validator=v.gt(0))
    stop_strings: tuple[str, ...] = doc("strings that end a response", default=(), validator=check_stop_strings)
    stop_token_ids: tuple[int, ...] = doc("token ids that end a response (besides eos)", default=(), validator=check_stop_token_ids)

    def model(self) -> ModelConfig:
        """The model the generation backend loads."""
        return ModelConfig(
            model_name=self.model_name,
            tokenizer_name=self.tokenizer_name,
            precision=self.precision,
            max_total_sequence_length=self.max_total_sequence_length,
        )

    def sampling(self) -> GenerationConfig:
        """The generation backend and its sampling defaults, as a training run's `policy.generation` holds them."""
        return GenerationConfig(
            backend=self.backend,
            backend_cfg=self.backend_cfg,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop_strings=self.stop_strings,
            stop_token_ids=self.stop_token_ids,
        )


@attrs.define(kw_only=True, frozen=True)
class EvalConfig:
    eval: EvalSettings = doc("metric and sampling", factory=EvalSettings)
    generation: EvalGenerationConfig = doc("the model and how it generates")
    data: DataConfig = doc("the evaluation set (data.dataset / data.dataset_cfg)", factory=DataConfig)
    env: EnvConfig = doc("the verifier", factory=EnvConfig)
    cluster: ClusterConfig = doc("where the engine runs", factory=ClusterConfig)
