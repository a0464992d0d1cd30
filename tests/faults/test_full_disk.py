"""A full disk during a save (a real 8 MB tmpfs: one checkpoint of the tiny run fits, the next does not):
the run stops with the path and the OS error and no traceback, the previous checkpoint stays intact,
and once there is room the same command resumes and ends exactly where the undisturbed run ended."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.faults.harness import STEPS, assert_same_run, published_checkpoints_are_intact, run
from tests.integration.grpo_helpers import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs")]


def mount_tmpfs(folder, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_cleanly(tiny_model_dir, reference, tmp_path):
    out, disk = tmp_path / "run", tmp_path / "disk"
    if not mount_tmpfs(disk, "8m"):
        pytest.skip("needs root and a working `mount -t tmpfs` (a container without CAP_SYS_ADMIN cannot)")
    try:
        ckpt = f"checkpointing.checkpoint_dir={disk / 'ckpt'}"
        out.mkdir()
        (out / "ckpt").symlink_to(disk / "ckpt", target_is_directory=True)
        assert run(tiny_model_dir, out, ckpt) == 1
        stderr = " ".join((out / "stderr.log").read_text().split())
        assert "Traceback" not in stderr
        assert f"saving checkpoint step 2 failed at {disk / 'ckpt' / 'tmp_step_2'}" in stderr
        assert "No space left on device (errno 28)" in stderr
        assert f"the previous checkpoint {disk / 'ckpt' / 'step_1'} is intact" in stderr
        assert published_checkpoints_are_intact(disk / "ckpt") == [1]
        assert not list((disk / "ckpt").glob("tmp_step_*"))
        assert [r["step"] for r in read_metrics(out / "logs")] == [1]

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # the user frees space
        assert run(tiny_model_dir, out, ckpt) == 0, (out / "stderr.log").read_text()[-3000:]
        assert published_checkpoints_are_intact(disk / "ckpt") == [STEPS - 1, STEPS]
        assert_same_run(reference, out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
