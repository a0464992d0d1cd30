"""GRPO, DPO and SFT with `policy.lora` on the tiny model: each runs, the reference is the base with adapters off
(never a second model), checkpoints hold adapters only, `reinforge convert` merges them (or writes a PEFT folder),
and resuming across a LoRA change is refused."""

from __future__ import annotations

import json

import pytest
import torch

from reinforge.backends.training.dtensor.backend import DTensorBackend
from reinforge.backends.training.safe_dcp import SafeFileSystemReader
from reinforge.cli.main import main
from reinforge.core.errors import ReinforgeError
from reinforge.core.load import load_config
from reinforge.trainer import Trainer
from tests.integration.grpo_helpers import CPU_RECIPE, REPO, tiny_overrides

CONFIGS = REPO / "examples" / "configs"


@pytest.fixture(autouse=True)
def _no_reference_copy(monkeypatch):
    """With LoRA the reference is the live module with adapters off: building a reference model is a failure."""

    def refuse(self):  # noqa: ANN001, ANN202
        raise AssertionError("a LoRA run built a second (reference) model")

    monkeypatch.setattr(DTensorBackend, "_reference_module", refuse)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows(log_dir):
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _tensor_keys(policy_dir) -> list[str]:
    keys = SafeFileSystemReader(str(policy_dir / "dcp")).read_metadata().state_dict_metadata
    return [k for k in keys if k.startswith(("model.", "optimizer.state."))]


def _common(model_dir, tmp_path) -> list[str]:
    return [
        f"policy.model_name={model_dir}",
        f"logger.log_dir={tmp_path / 'logs'}",
        "logger.loggers=[jsonl]",
        f"checkpointing.checkpoint_dir={tmp_path / 'ckpt'}",
    ]


def test_grpo_step_with_lora_and_a_kl_penalty_uses_the_adapters_off_reference(tiny_model_dir, tmp_path):
    extra = ("policy.lora.enabled=true", "policy.lora.dim=4", "loss_fn.reference_policy_kl_penalty=0.05", "policy.optimizer.lr=1e-3")
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_dir, tmp_path, steps=1, extra=extra))
    assert config.policy.lora.enabled and config.loss_fn.reference_policy_kl_penalty == 0.05
    Trainer.from_config(config).fit()
    train = [r for r in _rows(tmp_path / "logs") if "train/loss" in r]
    assert len(train) == 1
    assert train[0]["train/kl_penalty"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference (B = 0)
    assert train[0]["train/grad_norm"] > 0


def test_dpo_recipe_with_lora_starts_at_ln2_and_checkpoints_adapters_only(tiny_model_dir, tmp_path):
    overrides = [*_common(tiny_model_dir, tmp_path), "dpo.max_num_steps=2", "dpo.val_period=2", "checkpointing.save_period=2",
                 "data.dataset_cfg.num_samples=32", "data.val_dataset_cfg.num_samples=16"]
    config = load_config(CONFIGS / "dpo-arith-lora-cpu.yaml", overrides)
    assert config.policy.lora.enabled and config.policy.optimizer.lr == 1e-4
    Trainer.from_config(config).fit()
    rows = _rows(tmp_path / "logs")
    val = [r for r in rows if "val/preference_loss" in r]
    assert val[0]["step"] == 0 and val[0]["val/preference_loss"] == pytest.approx(0.6931472, abs=1e-6)  # ln 2 exactly
    assert [r["step"] for r in rows if "train/accuracy" in r] == [1, 2]
    keys = _tensor_keys(tmp_path / "ckpt" / "step_2" / "policy")
    assert keys and all(k.endswith((".lora_A", ".lora_B")) or ".lora_A." in k or ".lora_B." in k for k in keys)


def test_sft_recipe_with_lora_converts_merged_and_as_adapter_and_refuses_a_full_resume(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    overrides = [*_common(tiny_model_dir, tmp_path), "sft.max_num_steps=2", "sft.val_period=2", "checkpointing.save_period=2",
                 "data.dataset_cfg.num_samples=32", "data.val_dataset_cfg.num_samples=16", "policy.optimizer.lr=1e-2"]
    config = load_config(CONFIGS / "sft-arith-lora-cpu.yaml", overrides)
    Trainer.from_config(config).fit()
    val = [r["val/loss"] for r in _rows(tmp_path / "logs") if "val/loss" in r]
    assert len(val) == 2 and val[1] < val[0]
    policy = tmp_path / "ckpt" / "step_2" / "policy"
    assert all("lora_" in k for k in _tensor_keys(policy))

    assert main(["convert", f"--dcp-ckpt-path={policy}", f"--hf-ckpt-path={tmp_path / 'merged'}"]) == 0
    assert main(["convert", f"--dcp-ckpt-path={policy}", f"--hf-ckpt-path={tmp_path / 'adapter'}", "--adapter"]) == 0
    out = capsys.readouterr().out
    assert "wrote a Hugging Face folder" in out and "wrote a PEFT adapter folder" in out
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert merged.keys() == base.keys()
    changed = [k for k in base if not torch.equal(merged[k], base[k])]
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # only the adapted layers moved
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

    full = load_config(CONFIGS / "sft-arith-lora-cpu.yaml", [*overrides, "sft.max_num_steps=3", "policy.lora.enabled=false"])
    with pytest.raises(ReinforgeError, match=r"belongs to another run: lora\.alpha.*lora\.enabled: true \(checkpoint\) vs false"):
        Trainer.from_config(full).fit()


def test_lora_on_megatron_is_refused_by_the_cli_without_a_traceback(tiny_model_dir, tmp_path, capsys):
    argv = ["train", "--config", str(CONFIGS / "sft-arith-lora-cpu.yaml"), *_common(tiny_model_dir, tmp_path), "policy.backend=megatron"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the training backend 'megatron' does not declare LoRA support" in " ".join(err.split())
    assert "Traceback" not in err
