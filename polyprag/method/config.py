"""The training loop's settings as data (`TrainConfig`): the KB manifest and the CLI read them without
loading the loop (`method.train`) or torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..settings import check, setting

OBJECTIVES = ("nll", "distill", "both")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(2, "training epochs (0: nothing trained, as `add --no-train`)", at_least=0,
                          chosen="dev: 1 and 3 held back by the rule of benchmarks/levers_dev.sh (BENCHMARKS.md, "
                                 "\"Levers on dev\"); first the first runs' budget")
    batch_size: int = setting(4, "training samples per optimiser step", flag="--train-batch-size", at_least=1)
    lr_adapters: float = setting(2e-3, "the adapters' learning rate", above=0,
                                 chosen="dev: 1e-3 and 4e-3 held back by the rule of benchmarks/levers_dev.sh "
                                        "(BENCHMARKS.md, \"Levers on dev\"); first the first runs' budget")
    lr_routing: float = setting(1e-1, "the routing rows' learning rate", at_least=0,
                                chosen="dev: 3e-2 held back by the rule of benchmarks/levers_dev.sh (BENCHMARKS.md, "
                                       "\"Levers on dev\"); first the first runs' budget")
    # a linear map of d inputs moves ~√d times faster than a row
    lr_router: float = setting(1e-3, "--router embedding: the router's learning rate", above=0)
    tau: float = setting(1.0, "routing temperature in training", above=0, cli=False)
    weight_decay: float = setting(0.0, "AdamW weight decay", at_least=0, cli=False)
    max_length: int = setting(384, "tokens per sample; longer ones lose passage tokens from the left, never the "
                                   "answer", at_least=16, cli=False)
    seed: int = setting(0, "seed of initialisation, sample order and routing noise")
    train_adapters: bool = setting(True, "False: Poly-z, only the routing rows of new documents learn", cli=False)
    objective: str = setting("nll", "nll, distill (from the base model reading the document), or both",
                             choices=OBJECTIVES)
    distill_top_k: int = setting(32, "teacher tokens kept per answer position", at_least=1, cli=False)
    # DistilledPRAG (arXiv 2509.01088) aligns hidden states as well as logits: the student reads no passage, so
    # matching the teacher's last hidden state at each answer position asks for the passage's effect, not a token
    distill_hidden: float = setting(0.0, "with --objective distill or both: weight of 1 - cosine between the "
                                         "student's and the passage-reading teacher's last hidden states on the "
                                         "answer tokens (0: logits only)", at_least=0)
    # The teacher is the same small reader: without its answer examples it answers in sentences, and the KL taught
    # that form (BENCHMARKS.md, "distill is held back"); with them it answers as briefly as the rules' answers
    distill_shots: bool = setting(False, "with --objective distill or both: the teacher also reads the reader's "
                                         "answer examples (as rag does), so that its answers are short")
    routing_entropy: float = setting(0.0, "weight of a routing-entropy penalty in the loss (sparser routing; 0: "
                                          "none)", at_least=0)
    # With --routing-entropy at the same weight: the mutual information between document and adapter
    # (microsoft/mttl's moe_ent_reg): each document picks few adapters, the documents together use them all.
    routing_balance: float = setting(0.0, "weight of a reward for spread routing over a batch (the entropy of its "
                                          "mean weights): keeps --routing-entropy from collapsing every document "
                                          "onto the same adapters (0: none)", at_least=0)
    # Smaller passes hold fewer activations (the memory of a build) and the same gradient: each pass's loss is
    # weighted by its share of the batch's tokens.
    micro_batch: int = setting(0, "rows per forward/backward pass (0: the whole training batch); fewer hold less "
                                  "memory, with the same gradient", at_least=0)
    # Rows are packed longest first: bare questions share a pass, a row with a passage takes one of its own, so a
    # build's peak memory follows this budget rather than its longest samples (and on a CPU the smaller passes run
    # no slower: docs/experiments.md, "Memory of a build"). NLL only.
    pass_tokens: int = setting(384, "with --micro-batch 0: rows per pass so that a pass holds at most this many "
                                    "tokens (0: the whole batch); bounds a build's memory, with the same gradient",
                               at_least=0)
    checkpoint_activations: bool = setting(False, "recompute each layer in the backward pass instead of keeping its "
                                                  "activations: less memory, about a third more time")

    def __post_init__(self):
        check(self)
        if (self.distill_hidden or self.distill_shots) and self.objective == "nll":
            raise InputError(f"distill_hidden={self.distill_hidden}, distill_shots={self.distill_shots} "
                             "(--distill-hidden, --distill-shots) shape a teacher, which objective 'nll' has none of; "
                             "add --objective both (or distill).")
