"""polyprag: parametric RAG with latent-routed LoRA adapters (Poly-PRAG), and its baselines."""

from .lm.adapters import InventoryConfig
from .text.corpus import Document, chunk_documents, load_corpus
from .kb.knowledge import BuildConfig, KnowledgeBase
from .lm.models import load_model
from .text.retrieve import BM25Index
from .method.config import TrainConfig

__version__ = "0.1.0"
__all__ = ["BM25Index", "BuildConfig", "Document", "InventoryConfig", "KnowledgeBase", "TrainConfig",
           "chunk_documents", "load_corpus", "load_model"]
