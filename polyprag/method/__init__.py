"""Poly-PRAG's method: the LoRA inventory, routing, document embeddings and the joint training loop."""
