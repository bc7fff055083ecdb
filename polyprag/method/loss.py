"""The training loss: next-token NLL over a batch's labelled positions, the output head applied a chunk at a time."""

from __future__ import annotations

import torch

# fp32 logits held at once by the training loss (nll_loss): 85 positions of SmolLM2's 49k words. At 64 MiB a 384-token
# pass's loss was one chunk whose logits, their fp32 copy and the softmax sat on top of the pass's activations: a
# build's peak ~90 MiB higher, at the same time (BENCHMARKS.md, "Where a build's memory goes")
HEAD_CHUNK_BYTES = 16 * 2**20


def nll_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`model(**batch).loss` (the mean next-token NLL over the labelled positions), with the output head applied
    only at those positions, a chunk at a time, each chunk's gradient with respect to the hidden states computed
    in the same pass (`HeadNLL`): the (B, T, V) logits and their gradient (0.6 GB at a batch of 4 × 384 tokens over
    SmolLM2's 49k words, 5× more over Gemma's 262k) are never held, the head is applied once per position (not
    again in the backward pass), and it does no work on the prompt's prefix or on padding."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps PRAG's model
    head, cap = lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)
    if torch.is_grad_enabled() and any(p.requires_grad for p in head.parameters()):  # no_grad: a loss to read
        raise ValueError("nll_loss computes no gradient for the output head: freeze it (the base model is frozen in "
                         "every polyprag training)")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = lm.base_model(**inputs).last_hidden_state[:, :-1]  # (B, T-1, d): position t predicts token t+1
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    h, y = hidden[keep], labels[keep]  # (N, d), (N,)
    if len(y) == 0:
        raise ValueError("a training batch without labelled tokens")
    step = max(16, HEAD_CHUNK_BYTES // (4 * head.out_features))  # positions per chunk of fp32 logits
    parts = [HeadNLL.apply(h[i:i + step], head.weight, head.bias, y[i:i + step], cap) for i in range(0, len(y), step)]
    return torch.stack(parts).sum() / len(y)


class HeadNLL(torch.autograd.Function):
    """Σ NLL of y under the head's logits at h, and its gradient with respect to h from the same logits.
    Written out because autograd would keep each chunk's (n, V) softmax for the backward pass or, checkpointed,
    apply the head a second time there (benchmarks/train_step_time.py). The head is applied as F.linear of its
    weight and bias: a head module's own forward or hooks (quantized, wrapped) are not run."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, y: torch.Tensor,
                cap: float | None) -> torch.Tensor:
        logits = torch.nn.functional.linear(h, weight, bias).float()  # (n, V)
        if cap:  # Gemma-2-style final logit soft-capping, as the model's own forward applies it
            t = torch.tanh(logits / cap)
            logits = t * cap
        logp = torch.log_softmax(logits, dim=-1)  # (n, V)
        rows = torch.arange(len(y), device=y.device)
        loss = -logp[rows, y].sum()
        if not ctx.needs_input_grad[0]:  # no_grad, or h needs none: the gradient's (n, V) @ (V, d) is skipped
            return loss
        grad = logp.exp_()  # d loss / d logits = softmax − one-hot(y), in place of logp: one (n, V) buffer
        grad[rows, y] -= 1
        if cap:
            grad *= 1 - t * t
        ctx.save_for_backward(grad.to(weight.dtype) @ weight)  # (n, d): all the backward pass needs
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (grad_h,) = ctx.saved_tensors  # saved whenever backward can be called (needs_input_grad[0])
        return (grad_h * grad_loss).to(grad_h.dtype), None, None, None, None
