"""The `sglang` generation backend: an SGLang offline `Engine`, token ids in, token ids and logprobs out."""
