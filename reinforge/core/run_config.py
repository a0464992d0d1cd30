"""Config sections every algorithm's run shares: policy, generation, data, cluster, checkpoints, logging.

Key names follow the NeMo-RL recipes where the concept is the same (`policy.model_name`,
`policy.train_global_batch_size`, `checkpointing.checkpoint_dir`, ...), so a user of those
recipes recognises every key. Each algorithm registers a run-config class that combines these
sections with its own (`grpo:`, `loss_fn:`, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs
from attrs import validators as v

from reinforge.core.config import MovedKey, doc, plugin_options, plugin_options_map
from reinforge.core.env_guard import EnvGuardConfig
from reinforge.core.lora_config import LoRAConfig
from reinforge.core.model_config import ModelConfig
from reinforge.core.sampling import check_stop_strings, check_stop_token_ids, top_k_off

positive = v.gt(0)
non_negative = v.ge(0)


def _optional(validator: Any) -> Any:
    return v.optional(validator)


def check_seed(_: Any, attribute: attrs.Attribute, value: int | None) -> None:
    """Seeds are non-negative integers below 2**32 (what numpy and torch accept); checked at load, not deep in numpy."""
    if value is not None and not 0 <= value < 2**32:
        raise ValueError(f"must be a non-negative integer below 2**32, got {value}")


def check_betas(_: Any, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    """Adam's betas are decay rates in [0, 1); AdamW would refuse others only after the model loads."""
    if not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"each beta must be in [0, 1), got [{', '.join(f'{b:g}' for b in value)}]; the usual values are [0.9, 0.999]")


@attrs.define(kw_only=True, frozen=True)
class OptimizerConfig:
    name: Literal["adamw", "adam", "sgd"] = doc("optimizer (torch.optim)", default="adamw")
    lr: float = doc("peak learning rate", default=1e-5, validator=positive)
    weight_decay: float = doc("decoupled weight decay", default=0.01, validator=non_negative)
    betas: tuple[float, float] = doc("Adam betas, each in [0, 1)", default=(0.9, 0.999), validator=check_betas)
    eps: float = doc("Adam epsilon", default=1e-8, validator=positive)


@attrs.define(kw_only=True, frozen=True)
class SchedulerConfig:
    name: Literal["constant", "linear_warmup", "cosine"] = doc(
        "constant; linear_warmup (from warmup_start_factor to 1 over warmup_steps, then constant); cosine (warmup, then decay to min_lr_ratio)",
        default="constant",
    )
    warmup_steps: int = doc("optimizer steps of linear warmup", default=0, validator=non_negative)
    warmup_start_factor: float = doc("lr multiplier at step 0 of the warmup", default=0.1, validator=[positive, v.le(1.0)])
    total_steps: int | None = doc("optimizer steps over which cosine decays (required for cosine)", default=None, validator=_optional(positive))
    min_lr_ratio: float = doc("final lr / peak lr for cosine", default=0.0, validator=[non_negative, v.le(1.0)])

    def __attrs_post_init__(self) -> None:
        if self.name == "cosine" and self.total_steps is None:
            raise ValueError("scheduler 'cosine' needs total_steps")


@attrs.define(kw_only=True, frozen=True)
class GenerationConfig:
    backend: str = doc("generation backend plugin: hf, vllm, sglang, trtllm, ...", default="hf")
    backend_cfg: Any = plugin_options("generation_backend", "backend", "options of the chosen generation backend")
    max_new_tokens: int = doc("response tokens per sample", default=256, validator=positive)
    temperature: float = doc("sampling temperature (0 = greedy); the trainer divides logits by it too", default=1.0, validator=non_negative)
    top_p: float = doc("nucleus sampling mass", default=1.0, validator=[positive, v.le(1.0)])
    top_k: int | None = doc(
        "top-k sampling (null, 0 or -1 = off)", default=None, converter=top_k_off, validator=_optional(positive)
    )
    stop_strings: tuple[str, ...] = doc("strings that end a response", default=(), validator=check_stop_strings)
    stop_token_ids: tuple[int, ...] = doc("token ids that end a response (besides eos)", default=(), validator=check_stop_token_ids)


@attrs.define(kw_only=True, frozen=True)
class PolicyConfig:
    model_name: str = doc("Hugging Face model folder or hub name")
    tokenizer_name: str | None = doc("tokenizer folder (default: model_name)", default=None)
    chat_template: str | None = doc(
        "null: the tokenizer's own chat template (an error if it has none); 'default': ChatML when the tokenizer "
        "has none; or a path to a .jinja file, which replaces the tokenizer's template",
        default=None,
    )
    precision: Literal["float32", "bfloat16"] = doc("parameter and compute dtype", default="float32")
    train_global_batch_size: int = doc("samples per optimizer step", default=32, validator=positive)
    train_micro_batch_size: int = doc("samples per forward/backward pass", default=4, validator=positive)
    logprob_batch_size: int = doc("samples per forward pass when computing logprobs", default=8, validator=positive)
    max_total_sequence_length: int = doc("prompt + response tokens", default=1024, validator=positive)
    max_grad_norm: float | None = doc("gradient clipping (null = off)", default=1.0, validator=_optional(positive))
    optimizer: OptimizerConfig = doc("optimizer", factory=OptimizerConfig)
    scheduler: SchedulerConfig = doc("learning-rate schedule", factory=SchedulerConfig)
    lora: LoRAConfig = doc(
        "low-rank adapters (NeMo-RL: policy.dtensor_cfg.lora_cfg); enabled: train only them, the base stays frozen",
        factory=LoRAConfig,
    )
    backend: str = doc("training backend plugin: dtensor, megatron, ...", default="dtensor")
    backend_cfg: Any = plugin_options("training_backend", "backend", "options of the chosen training backend")
    generation: GenerationConfig = doc("rollout generation", factory=GenerationConfig)

    def for_training(self) -> PolicyConfig:
        """What the training backend receives: everything but the generation backend's options.

        Why: each worker group may run its own interpreter, and unpickling another part's options
        would import that part's package there (a raw ModuleNotFoundError where it is not installed).
        """
        return attrs.evolve(self, generation=attrs.evolve(self.generation, backend_cfg=None))

    @property
    def model(self) -> ModelConfig:
        """The model this policy trains: what a generation backend is built from (with its own options and sampling)."""
        return ModelConfig(
            model_name=self.model_name,
            tokenizer_name=self.tokenizer_name,
            chat_template=self.chat_template,
            precision=self.precision,
            max_total_sequence_length=self.max_total_sequence_length,
            lora=self.lora,
        )

    def __attrs_post_init__(self) -> None:
        if self.train_global_batch_size % self.train_micro_batch_size:
            raise ValueError(
                f"train_global_batch_size ({self.train_global_batch_size}) must be a multiple of "
                f"train_micro_batch_size ({self.train_micro_batch_size})"
            )


@attrs.define(kw_only=True, frozen=True)
class WorkerRuntimeConfig:
    """The Python environment one Ray worker group runs in (its Ray `runtime_env`).

    Why: engines pin clashing dependencies (vLLM, Megatron, SGLang each want their own torch or
    transformers), so each group may run its own interpreter while the driver stays small.
    Every interpreter needs reinforge and the group's plugin installed, and Ray at the driver's version.
    """

    py_executable: str | None = doc(
        "interpreter (or launcher command) that starts this group's workers, e.g. /envs/vllm/bin/python, "
        "or `uv run --isolated --project envs/vllm` for a uv-managed project venv; null = the driver's interpreter",
        default=None,
    )
    uv: tuple[str, ...] = doc(
        "packages Ray installs with uv into a fresh virtual environment for this group (runtime_env `uv`; "
        "needs uv on every node); empty = none",
        default=(),
    )
    env_vars: dict[str, str] = doc("environment variables set in this group's workers", factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.py_executable is not None and self.uv:
            raise ValueError("set py_executable or uv, not both: uv builds the group's interpreter itself")


@attrs.define(kw_only=True, frozen=True)
class ClusterConfig:
    executor: Literal["local", "ray"] = doc("local: one process, no Ray; ray: Ray worker groups", default="local")
    address: str | None = doc("Ray cluster address, e.g. auto or ray://head:10001 (null = start a local one)", default=None)
    num_nodes: int = doc("nodes to use", default=1, validator=positive)
    gpus_per_node: int = doc("GPUs per node (0 = CPU workers)", default=0, validator=non_negative)
    training_workers: int = doc("training worker processes (data x tensor parallel)", default=1, validator=positive)
    generation_workers: int = doc("generation engine replicas", default=1, validator=positive)
    environment_workers: int = doc("environment actors", default=1, validator=positive)
    cpus_per_worker: float = doc(
        "CPUs reserved per training worker and environment actor (fractions allowed); a worker's torch threads = max(1, floor)",
        default=1.0,
        validator=positive,
    )
    generation_cpus_per_worker: float | None = doc(
        "CPUs reserved per generation replica (null = cpus_per_worker)", default=None, validator=_optional(positive)
    )
    gpus_per_worker: float | None = doc(
        "GPUs per training worker (null = 1 when gpus_per_node > 0, else 0)", default=None, validator=_optional(non_negative)
    )
    generation_gpus_per_worker: float | None = doc(
        "GPUs per generation replica, i.e. its engine's tensor-parallel size on GPUs (null = gpus_per_worker); "
        "colocated mode needs it equal to gpus_per_worker",
        default=None,
        validator=_optional(non_negative),
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK"] = doc("Ray placement-group strategy", default="PACK")
    colocated: bool = doc("training and generation share devices (sleep/wake around each phase)", default=True)
    local_num_cpus: float | None = doc(
        "CPUs a locally started Ray advertises (null = this machine's count; more oversubscribes the cores)",
        default=None,
        validator=_optional(positive),
    )
    placement_timeout_s: float = doc(
        "seconds to wait for the placement groups before failing with what was missing", default=120.0, validator=positive
    )
    worker_start_timeout_s: float = doc(
        "seconds a worker may take to start (building its runtime environment included) before the run fails",
        default=600.0,
        validator=positive,
    )
    environment_max_restarts: int = doc(
        "times Ray restarts a crashed environment actor (its chunk of the batch is retried once)", default=1, validator=non_negative
    )
    training_runtime: WorkerRuntimeConfig = doc("Python environment of the training workers", factory=WorkerRuntimeConfig)
    generation_runtime: WorkerRuntimeConfig = doc("Python environment of the generation workers", factory=WorkerRuntimeConfig)
    environment_runtime: WorkerRuntimeConfig = doc("Python environment of the environment actors", factory=WorkerRuntimeConfig)
    refit_transport: Literal["object_store", "collective", "cuda_ipc"] = doc(
        "how refit buckets travel trainer -> engines on the ray executor: object_store (through Ray's shared memory); "
        "collective (a broadcast group of trainer rank 0 and the replicas: gloo on CPU, NCCL on GPU with "
        "colocated: false); cuda_ipc (colocated GPUs: CUDA IPC handles to the replica on the same GPU). "
        "The local executor ignores it",
        default="object_store",
    )
    bind_address: str | None = doc(
        "address the run's listeners bind (Ray's head, the refit store, the training rendezvous). null = 127.0.0.1: "
        "a locally started single-node run is reachable from this machine only. Multi-node runs must opt in with "
        "this node's address (or 0.0.0.0) and keep Ray's token authentication on (RAY_AUTH_MODE=token)",
        default=None,
    )
    refit_timeout_s: float = doc(
        "seconds the collective refit group may take to form, and one broadcast to finish", default=300.0, validator=positive
    )

    def __attrs_post_init__(self) -> None:
        gpus = self.gpus_per_node > 0
        if self.refit_transport == "cuda_ipc" and not gpus:
            raise ValueError(
                "refit_transport cuda_ipc shares CUDA memory between processes on one GPU, so it needs GPU workers "
                "(cluster.gpus_per_node > 0); on CPU use object_store or collective"
            )
        if self.refit_transport == "cuda_ipc" and not self.colocated:
            raise ValueError(
                "refit_transport cuda_ipc needs colocated placement (each engine on its trainer's GPU); with "
                "colocated: false the engines have GPUs of their own: use refit_transport collective (NCCL)"
            )
        if self.refit_transport == "collective" and gpus and self.colocated:
            raise ValueError(
                "refit_transport collective on GPUs uses NCCL, which cannot put two ranks of one group on one GPU as "
                "colocated placement would; use refit_transport cuda_ipc when colocated, or colocated: false"
            )

    @property
    def training_gpus(self) -> float:
        """GPUs one training worker reserves."""
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1.0 if self.gpus_per_node > 0 else 0.0

    @property
    def generation_cpus(self) -> float:
        """CPUs one generation replica reserves."""
        return self.cpus_per_worker if self.generation_cpus_per_worker is None else self.generation_cpus_per_worker

    @property
    def generation_gpus(self) -> float:
        """GPUs one generation replica reserves."""
        return self.training_gpus if self.generation_gpus_per_worker is None else self.generation_gpus_per_worker


def async_grpo_cluster_refusal(cluster: ClusterConfig) -> str | None:
    """Why asynchronous rollouts (`grpo.async_grpo`) cannot run on this cluster (None when they can): colocated Ray
    groups share devices and take turns. Here, not in the algorithm, so that the composition root refuses Python-built
    runs with the same words as config load (GRPORunConfig)."""
    if cluster.executor == "ray" and cluster.colocated:
        return (
            "grpo.async_grpo.enabled with cluster.executor=ray and cluster.colocated=true: colocated training and "
            "generation share devices and take turns on them, so nothing can overlap; set cluster.colocated=false "
            "(the generation and training groups on devices of their own), or use cluster.executor=local"
        )
    return None


@attrs.define(kw_only=True, frozen=True)
class CheckpointingConfig:
    enabled: bool = doc("write checkpoints", default=True)
    checkpoint_dir: str = doc("where step_N/ folders go", default="results/checkpoints")
    save_period: int = doc("save every N steps", default=10, validator=positive)
    keep_top_k: int | None = doc("keep the best k checkpoints by metric_name (null = all)", default=None, validator=_optional(positive))
    metric_name: str | None = doc("metric ranking checkpoints, e.g. val:accuracy (null = keep the latest)", default=None)
    higher_is_better: bool = doc("whether a larger metric is better", default=True)
    resume: Literal[True, False, "force"] = doc(
        "true: resume from the newest intact step in checkpoint_dir (damaged ones are skipped with a warning); "
        "false: start over; force: resume even from another run's checkpoint (other model, data or algorithm)",
        default=True,
    )
    save_before_minutes: float | None = doc(
        "wall-clock budget in minutes, counted from the start of training: when another step (at the slowest step's "
        "pace) and its save would not fit, save a checkpoint and exit with status 0 (null = no budget); the first "
        "SIGTERM does the same after the current step",
        default=None,
        validator=_optional(positive),
    )


@attrs.define(kw_only=True, frozen=True)
class LoggerConfig:
    log_dir: str = doc("run directory for metrics, samples and plots", default="results/logs")
    loggers: tuple[str, ...] = doc("logger plugins: console, jsonl, tensorboard, wandb, mlflow", default=("console", "jsonl"))
    num_samples_to_log: int = doc("prompt/response samples written per step", default=4, validator=non_negative)
    logger_cfg: dict[str, Any] = plugin_options_map(
        "logger", "each logger's own options by logger name, e.g. {wandb: {project: demo}, mlflow: {experiment: demo}}"
    )

    # The W&B and MLflow settings were flat keys here; they belong to their logger plugins now.
    moved_keys: ClassVar[dict[str, MovedKey]] = {
        "wandb_project": MovedKey("logger_cfg.wandb.project"),
        "mlflow_tracking_uri": MovedKey("logger_cfg.mlflow.tracking_uri"),
        "mlflow_experiment": MovedKey("logger_cfg.mlflow.experiment", old_default="reinforge"),
    }


@attrs.define(kw_only=True, frozen=True)
class ChatTurn:
    """One message of a worked example shown before every problem (few-shot prompting in chat form)."""

    role: Literal["user", "assistant", "tool"] = doc(
        "user, assistant, or tool (a tool's result, answering the tool call in the assistant message before it)",
        validator=v.in_(("user", "assistant", "tool")),
    )
    content: str = doc("the message text, used as it is (no template)")


def check_example_turns(_: Any, attribute: attrs.Attribute, value: tuple[ChatTurn, ...]) -> None:
    """Worked examples: each is a user message, then any tool exchanges (assistant call, tool result), then the
    assistant's answer; so user, assistant, [tool, assistant, ...] per example."""
    roles = [turn.role for turn in value]
    for k, role in enumerate(roles):
        before, after = (roles[k - 1] if k else None), (roles[k + 1] if k + 1 < len(roles) else None)
        if role == "tool" and (before != "assistant" or after != "assistant"):
            raise ValueError(
                f"{attribute.name} has an unbalanced tool exchange at message {k}: a tool message must answer the "
                "assistant message before it (the one with the tool call) and be followed by the assistant's next "
                f"message (user, assistant, tool, assistant, ...), got roles {roles}"
            )
    # without each tool result and the assistant message answering it, what is left must alternate
    plain = [role for k, role in enumerate(roles) if role != "tool" and not (k and roles[k - 1] == "tool")]
    if plain != ["user", "assistant"] * (len(plain) // 2):
        raise ValueError(
            f"{attribute.name} must alternate user and assistant messages, starting with user and ending with "
            "assistant (one worked example = two messages, or user, assistant, tool, assistant, ... with tool "
            f"calls), got roles {roles}"
        )


def tool_schemas(value: Any) -> Any:
    """Bare function schemas ({name, description, parameters}) get the {type: function, function: ...} wrapper."""
    if not isinstance(value, (list, tuple)):
        return value
    return tuple(
        {"type": "function", "function": dict(t)} if isinstance(t, dict) and "function" not in t and "name" in t else t
        for t in value
    )


def check_tools(_: Any, attribute: attrs.Attribute, value: tuple[dict[str, Any], ...]) -> None:
    for k, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]):
            raise ValueError(
                f"{attribute.name}[{k}] must be a function schema, {{type: function, function: {{name, description, "
                f"parameters}}}} (or the function part alone), got {tool!r:.120}"
            )


@attrs.define(kw_only=True, frozen=True)
class DataConfig:
    dataset: str = doc("dataset reader plugin: arithmetic, deepscaler, aime, openmathinstruct2, jsonl, ...", default="arithmetic")
    dataset_cfg: Any = plugin_options("dataset", "dataset", "options of the training dataset reader")
    val_dataset: str | None = doc("validation dataset reader (null = no validation)", default=None)
    val_dataset_cfg: Any = plugin_options("dataset", "val_dataset", "options of the validation dataset reader")
    prompt_file: str | None = doc(
        "prompt template: cot, math, boxed (the problem, then a request for a \\boxed{} answer), a file path, or null "
        "for the raw problem",
        default="cot",
    )
    system_prompt: str | None = doc("system message prepended to every prompt", default=None)
    example_turns: tuple[ChatTurn, ...] = doc(
        "worked examples as chat messages ({role: user|assistant|tool, content}) between the system message and "
        "the problem: one-shot or few-shot prompting, e.g. to show a chat model the answer format, or a tool call "
        "(assistant), its result (tool) and the final answer (assistant)",
        default=(),
        validator=check_example_turns,
    )
    tools: tuple[dict[str, Any], ...] = doc(
        "function schemas of the tools the model may call (JSON schema, as OpenAI and Hugging Face write them), "
        "passed as tools= to every chat-template call: the prompts and the bridges between turns. The chat "
        "template must render them (Qwen2.5, Llama 3.1, Hermes ... do; ChatML without tools does not, and is "
        "refused): for such a template describe the tool in data.system_prompt instead",
        default=(),
        converter=tool_schemas,
        validator=check_tools,
    )
    max_input_seq_length: int = doc("longest prompt in tokens", default=512, validator=positive)
    on_overlong_prompt: Literal["drop", "truncate"] = doc("what to do with longer prompts (counted either way)", default="drop")
    max_dropped_share: float = doc(
        "largest share of a dataset's prompts that may be dropped as too long before the run stops with an error",
        default=0.5,
        validator=[non_negative, v.le(1.0)],
    )
    shuffle: bool = doc("shuffle prompts every epoch", default=True)


@attrs.define(kw_only=True, frozen=True)
class EnvConfig:
    name: str = doc("environment plugin: math, ...", default="math")
    env_cfg: Any = plugin_options("environment", "name", "options of the chosen environment")
    guard: EnvGuardConfig = doc("deadlines and failure budget of every environment call (reinforge.core.env_guard)", factory=EnvGuardConfig)
