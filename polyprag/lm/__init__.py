"""The language model: loading it, prompts, batched generation with mixed adapters, answers extracted."""
