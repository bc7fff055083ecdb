"""polyprag: parametric RAG with latent-routed LoRA adapters (Poly-PRAG), and its baselines."""

from .adapters import InventoryConfig
from .corpus import Document, chunk_documents, load_corpus
from .kb import BuildConfig, KnowledgeBase
from .models import load_model
from .retrieve import BM25Index
from .train import TrainConfig

__version__ = "0.1.0"
__all__ = ["BM25Index", "BuildConfig", "Document", "InventoryConfig", "KnowledgeBase", "TrainConfig",
           "chunk_documents", "load_corpus", "load_model"]
