"""The `hf` generation backend: Hugging Face `generate()` with the KV cache, the embedded default.

Needs only torch and transformers, so the whole pipeline runs on a laptop CPU. Importing this
package is light; `backend` (torch, transformers) is imported when the registry resolves "hf".
"""

from __future__ import annotations

from reinforge.backends.generation.hf.config import HFGenerationConfig

__all__ = ["HFGenerationConfig"]
