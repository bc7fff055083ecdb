"""Documents and questions as text: corpora, QA datasets, counterfactual rewrites, augmentation, retrieval."""
