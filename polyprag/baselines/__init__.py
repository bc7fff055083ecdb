"""The baselines polyprag is measured against: PRAG (a LoRA per document) and DyPRAG (a translator)."""
