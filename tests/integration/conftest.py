from __future__ import annotations

pytest_plugins = ["reinforge.testing.fixtures"]
