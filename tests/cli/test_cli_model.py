"""`reinforge model build`: a real (tiny) build, the --demo preset's resolution, and bad flags as clean errors."""

from __future__ import annotations

import json

from reinforge.cli.main import build_parser, main
from reinforge.cli.model_cmd import DEMO_MODEL, resolve_demo
from reinforge.models.tiny_model import METADATA_FILE


def parse(*argv: str):
    args = build_parser().parse_args(["model", "build", *argv, "--out", "x"])
    resolve_demo(args)
    return args


def test_demo_preset_fills_unset_flags_and_explicit_flags_win():
    args = parse("--demo", "--warmup-steps", "7")
    assert (args.size, args.warmup_steps, args.warmup_boxed_fraction) == ("small", 7, DEMO_MODEL["warmup_boxed_fraction"])
    assert args.warmup_max_operand == 10 and args.warmup_lr == 1e-3
    plain = parse()
    assert (plain.size, plain.warmup_steps, plain.warmup_boxed_fraction) == ("small", 0, None)


def test_builds_a_warmed_tiny_model_and_reuses_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REINFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model"
    argv = ["model", "build", "--size", "tiny", "--warmup-steps", "2", "--warmup-boxed-fraction", "0.5", "--out", str(out)]
    assert main(argv) == 0
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["warmup_steps"] == 2 and metadata["warmup"]["boxed_probability"] == 0.5
    assert main(argv) == 0
    assert "already holds this model" in capsys.readouterr().out


def test_bad_flags_are_one_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REINFORGE_CACHE", str(tmp_path / "cache"))
    argv = ["model", "build", "--size", "tiny", "--warmup-steps", "2", "--out", str(tmp_path / "m")]
    assert main([*argv, "--warmup-boxed-fraction", "1.5"]) == 1
    assert "boxed_probability must be within [0, 1], got 1.5" in capsys.readouterr().err
    assert main([*argv, "--warmup-lr", "0"]) == 1
    assert "learning_rate must be > 0" in capsys.readouterr().err
