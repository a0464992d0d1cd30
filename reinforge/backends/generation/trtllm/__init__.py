"""The `trtllm` generation backend: TensorRT-LLM's `LLM` API (PyTorch backend), token ids in, token ids and logprobs out."""
