"""The multi-turn plugin shown in docs/multi-turn.md works as printed, in under 40 lines."""

from __future__ import annotations

import re
from pathlib import Path

from reinforge.core.registry import Registry, RegistrySettings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "multi-turn.md"


def test_the_documented_plugin_registers_and_plays(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) < 40
    (tmp_path / "count_down.py").write_text(code)
    (tmp_path / "plugins.toml").write_text('[plugins]\nlocal = ["count_down.py"]\n')
    registry = Registry.create(RegistrySettings(project_file=str(tmp_path / "plugins.toml"), load_entry_points=False))
    env = registry.resolve("environment", "count_down")()
    conversation = [{"role": "user", "content": "Guess my number."}, {"role": "assistant", "content": "\\boxed{3}"}]
    step = env.step([conversation, [*conversation[:1], {"role": "assistant", "content": "\\boxed{7}"}]], [{"answer": "7"}] * 2)
    assert step.rewards == [0.0, 1.0] and step.done == [False, True]
    assert step.observations[0] == {"role": "user", "content": "Higher."}
