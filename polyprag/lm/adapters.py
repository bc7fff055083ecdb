"""The adapter inventory: M LoRA pairs of rank r on every target linear layer, mixed per batch row.

Why not PEFT's Poly tuner: it routes by integer task ids through a router owned by each layer, with a
fixed task count; Poly-PRAG needs external mixing weights at inference (the mean of the retrieved
documents' weights, or uniform) and a document table that grows (Poly-z). So the routing table lives in
`method.routing` and the layer below only mixes the weights it is handed: ~60 lines.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import InputError
from ..settings import check, setting

# Module-name suffixes per family: Llama, Qwen, Gemma, Mistral and SmolLM share the first; GPT-2 style
# models the second. "mlp" (PRAG's choice, the default) and "attn" pick the family's set.
FAMILIES = {
    "mlp": (("gate_proj", "up_proj", "down_proj"), ("mlp.c_fc", "mlp.c_proj")),
    "attn": (("q_proj", "k_proj", "v_proj", "o_proj"), ("attn.c_attn", "attn.c_proj")),
}


# Each adapted layer's mixing weights for the forward pass in progress: a context-local value set by
# `mixing(...)`, not state on the shared modules, so threads (or tasks) that use one model each see their own.
_MIXING: ContextVar[dict[nn.Module, torch.Tensor]] = ContextVar("polyprag_mixing", default={})
# Each layer's mixed (A_w, B_w) within a `mixing(...)` block entered without gradients (answering): the weights
# are fixed for the block, so the mixing is done once instead of once per generated token.
_MIXED: ContextVar[dict[tuple, tuple[torch.Tensor, torch.Tensor]] | None] = ContextVar("polyprag_mixed", default=None)


@dataclass(frozen=True)
class InventoryConfig:
    n_adapters: int = setting(20, "inventory size M", flag="--adapters", at_least=1,
                              chosen="the paper's value (arXiv 2511.17044)")
    rank: int = setting(4, "LoRA rank r", at_least=1, chosen="the paper's value (arXiv 2511.17044)")
    alpha: float = setting(32.0, "LoRA alpha; scale = alpha/r", above=0)
    targets: tuple[str, ...] = setting(("mlp",), "mlp, attn, or module-name suffixes such as q_proj, comma-separated")
    mixing: str = setting("poly", "poly: A = Σ w A_m, B = Σ w B_m; delta: Σ w B_m A_m", choices=("poly", "delta"),
                          cli=False)
    shared: bool = setting(False, "one more adapter that every document uses in full, beside its routed mixture",
                           flag="--shared-adapter")
    # Backward stops at the lowest adapted block, so training costs less the fewer blocks carry adapters.
    top_layers: int = setting(0, "adapters on the last N transformer blocks only (0: all); fewer train faster",
                              at_least=0)
    # Multi-head routing (MHR, arXiv 2211.03831): a document's mixture may take one adapter's block of inputs and
    # another's next block, so M adapters make M^H mixtures instead of M; H = 1 is Polytropon's single head.
    heads: int = setting(1, "routing heads: each adapter's inputs and outputs split into H blocks, each block "
                            "mixed by weights of its own (the routing row grows H-fold)", at_least=1,
                       chosen="dev: 4 not confirmed on top of bf16+context1+qa6 by the rule of benchmarks/levers_dev.sh "
                              "(own - shuffled fell on HotpotQA dev; BENCHMARKS.md, \"The forward resumes\"); first "
                              "Polytropon's single head")

    def __post_init__(self):
        check(self)
        if self.heads > 1 and self.mixing != "poly":
            raise InputError(f"heads={self.heads} (--heads): multi-head routing mixes A and B block-wise, which "
                             f"mixing={self.mixing!r} does not; use mixing='poly' or --heads 1.")


class PolyLoRALinear(nn.Module):
    """h = W0 x + s · B_w (A_w x), with A_w, B_w mixed from the inventory by each row's weights w."""

    def __init__(self, base: nn.Linear, config: InventoryConfig, path: str = ""):
        super().__init__()
        self.base_layer = base
        self.config = config
        self.path = path  # the replaced module's name in the model: what its tensors are saved under
        self.scaling = config.alpha / config.rank
        m, r = config.n_adapters, config.rank
        d_in, d_out = _in_out(base)
        if d_in % config.heads or d_out % config.heads:
            raise InputError(f"--heads {config.heads}: {path or 'a target layer'} has {d_in} inputs and {d_out} "
                             "outputs, and the heads must divide both; choose a divisor of both (1 always works).")
        self.lora_A = nn.Parameter(_fresh_a(m, r, d_in))
        self.lora_B = nn.Parameter(torch.zeros(m, d_out, r))  # zeros: no change until trained
        if config.shared:  # C-Poly's shared skill: what all documents need (the answer format) lives here,
            # so the routed part may be sparse without losing it
            self.shared_A = nn.Parameter(_fresh_a(1, r, d_in)[0])  # (r, d_in)
            self.shared_B = nn.Parameter(torch.zeros(d_out, r))

    @torch.no_grad()
    def grow(self, n: int) -> None:
        """Append n fresh adapters (A as at init, B = 0); the existing ones keep their values."""
        m, r, d_in = self.lora_A.shape
        self.lora_A = nn.Parameter(torch.cat([self.lora_A.data, _fresh_a(n, r, d_in).to(self.lora_A)]))
        self.lora_B = nn.Parameter(torch.cat([self.lora_B.data, torch.zeros(n, *self.lora_B.shape[1:]).to(self.lora_B)]))

    def named_adapters(self) -> dict[str, nn.Parameter]:
        """The trained tensors, by the names they are saved under."""
        names = ("lora_A", "lora_B", "shared_A", "shared_B") if self.config.shared else ("lora_A", "lora_B")
        return {k: getattr(self, k) for k in names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, d_in)
        out = self.base_layer(x)
        w = mixed(self)  # (B, K, H, M'), only inside `mixing(...)`; M' ≤ M
        if w is None:
            return out
        # Applied in the activations' dtype and device (bf16 on a GPU); the parameters stay fp32 masters,
        # and the routing table stays on the CPU (its rows are tiny), so its weights travel here.
        w = w.to(x.device)  # K mixtures whose adapters are summed; adapters past M' not mixed
        if self.config.mixing == "delta":
            delta = self._delta(x, w.to(x.dtype))
        else:
            a, b = self._mixed_pair(w, x.dtype)  # (B, K·r, d_in), (B, d_out, K·r)
            delta = (x @ a.mT) @ b.mT  # (B, T, d_out); two batched matmuls, the cheapest call per generated token
        if self.config.shared:
            delta = delta + (x @ self.shared_A.T.to(x.dtype)) @ self.shared_B.T.to(x.dtype)  # (B, T, d_out)
        return out + self.scaling * delta

    def _mixed_pair(self, w: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """A_w = Σ_m w_m A_m and B_w = Σ_m w_m B_m per row and mixture k, the K mixtures side by side along the
        rank: B_w A_w x is then Σ_k B_k (A_k x), PRAG's sum of document adapters (the mean of the weights would
        blur K documents into one weaker mixture). Without gradients they are kept for the rest of the
        `mixing(...)` block: generation reuses them at every new token."""
        cache, key = _MIXED.get(), (self, dtype)
        if cache is not None and not torch.is_grad_enabled() and key in cache:
            return cache[key]
        # Training mixes the fp32 masters in fp32 and casts the small (B, K·r, d) result: a cast first would keep
        # a 16-bit copy of the whole inventory per pass for the backward, and its gradient (BENCHMARKS.md, "Where
        # a build's memory goes"). Answering (nothing that learns in the mix) mixes in `dtype`, as it always has.
        learns = torch.is_grad_enabled() and (w.requires_grad or self.lora_A.requires_grad)
        mix = torch.float32 if learns else dtype
        w = w.to(mix)
        lora_a, lora_b = self.lora_A[:w.shape[-1]].to(mix), self.lora_B[:w.shape[-1]].to(mix)  # first M'
        h = w.shape[2]
        if h == 1:  # the single-head einsums as before heads existed: KBs answer bit for bit as they did
            w = w[:, :, 0]  # (B, K, M')
            a = torch.einsum("bkm,mrd->bkrd", w, lora_a).flatten(1, 2)  # (B, K·r, d_in)
            b = torch.einsum("bkm,mor->bokr", w, lora_b).flatten(2, 3)  # (B, d_out, K·r)
        else:  # head j mixes the j-th block of every adapter's inputs (A) and outputs (B) by its own weights
            a = torch.einsum("bkjm,mrjd->bkrjd", w, lora_a.unflatten(2, (h, -1))).flatten(3, 4).flatten(1, 2)
            b = torch.einsum("bkjm,mjor->bjokr", w, lora_b.unflatten(1, (h, -1))).flatten(1, 2).flatten(2, 3)
        pair = (a.to(dtype), b.to(dtype))
        if cache is not None and not torch.is_grad_enabled():
            cache[key] = pair
        return pair

    def _delta(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_m w_m B_m (A_m x): each adapter applied, then weighted (K mixtures: their weights summed)."""
        lora_a, lora_b = self.lora_A[:w.shape[-1]].to(x.dtype), self.lora_B[:w.shape[-1]].to(x.dtype)
        ax = torch.einsum("btd,mrd->btmr", x, lora_a)  # (B, T, M', r)
        return torch.einsum("btmr,mor,bm->bto", ax, lora_b, w[:, :, 0].sum(1))  # one head (InventoryConfig)


def _fresh_a(m: int, r: int, d_in: int) -> torch.Tensor:
    a = torch.empty(m, r, d_in)
    for a_m in a:  # same init as PEFT's LoRA A
        nn.init.kaiming_uniform_(a_m, a=math.sqrt(5))
    return a


def _in_out(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if type(layer).__name__ == "Conv1D":  # GPT-2 style: weight is (d_in, d_out)
        return layer.weight.shape[0], layer.weight.shape[1]
    raise TypeError(f"cannot put adapters on {type(layer).__name__}; target nn.Linear or GPT-2 Conv1D layers")


def target_modules(model: nn.Module, targets: tuple[str, ...], top_layers: int = 0) -> list[tuple[str, nn.Module]]:
    """Modules whose name ends with a target suffix; "mlp"/"attn" expand to the model family's names;
    with `top_layers` > 0 only those in the last `top_layers` blocks (by the block index in the name)."""
    names = [n for n, _ in model.named_modules()]
    suffixes = []
    for t in targets:
        if t in FAMILIES:  # the first family with a match in this model
            suffixes += next((f for f in FAMILIES[t] if any(n.endswith("." + f[0]) for n in names)), ())
        else:
            suffixes.append(t)
    found = [(n, m) for n, m in model.named_modules() if any(n.endswith("." + s) for s in suffixes)]
    if not found:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no target module {list(targets)} in {type(model).__name__}; its linear layers: {linear}")
    return _top_blocks(found, top_layers) if top_layers else found


def _top_blocks(found: list[tuple[str, nn.Module]], top_layers: int) -> list[tuple[str, nn.Module]]:
    """Of `found`, the modules in the last `top_layers` blocks: a block is the first integer in a module's
    name ("model.layers.12.mlp.up_proj", "transformer.h.3.mlp.c_fc")."""
    blocks = {n: next((int(p) for p in n.split(".") if p.isdigit()), None) for n, _ in found}
    if None in blocks.values():
        raise ValueError(f"top_layers={top_layers}: some target modules sit in no numbered block "
                         f"({[n for n, b in blocks.items() if b is None][:2]}); give top_layers 0")
    n_blocks = max(blocks.values()) + 1
    if top_layers > n_blocks:
        raise ValueError(f"top_layers={top_layers}, but the model has {n_blocks} blocks; give at most {n_blocks} (0: all)")
    return [(n, m) for n, m in found if blocks[n] >= n_blocks - top_layers]


def inject(model: nn.Module, config: InventoryConfig) -> list[PolyLoRALinear]:
    """Swap every target layer for a PolyLoRALinear (in module order); freeze everything else."""
    if any(isinstance(m, PolyLoRALinear) for m in model.modules()):
        raise ValueError("this model already carries an adapter inventory; load a fresh base model")
    for p in model.parameters():
        p.requires_grad_(False)
    targets = target_modules(model, config.targets, config.top_layers)
    layers = []
    for name, mod in targets:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        layer = PolyLoRALinear(mod, config, path=name).to(device=mod.weight.device)
        setattr(parent, name.rsplit(".", 1)[-1], layer)
        layers.append(layer)
    return layers


def old_part(name: str, m_old: int) -> slice:
    """Of adapter tensor `name`, what existed before a growth to past m_old: the first m_old adapters of
    lora_A/lora_B, all of the shared adapter."""
    return slice(m_old) if name.startswith("lora") else slice(None)


def eject(model: nn.Module) -> list[tuple[nn.Module, str, PolyLoRALinear]]:
    """`inject` undone: the base layers back in place of the adapter layers; returns what was taken out."""
    taken = []
    for name, module in list(model.named_modules()):
        if isinstance(module, PolyLoRALinear):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], module.base_layer)
            taken.append((parent, name.rsplit(".", 1)[-1], module))
    return taken


def reinstate(taken: list[tuple[nn.Module, str, PolyLoRALinear]]) -> None:
    """`eject` undone: the adapter layers back in place."""
    for parent, attr, module in taken:
        setattr(parent, attr, module)


def inventory_state(layers: list[PolyLoRALinear]) -> dict[str, torch.Tensor]:
    """Views on the CPU (copies from a GPU), keyed "<module path>.<name>" (e.g.
    "model.layers.0.mlp.gate_proj.lora_A"): what safetensors saves."""
    return {f"{l.path}.{k}": p.detach().cpu().contiguous() for l in layers for k, p in l.named_adapters().items()}


def load_inventory_state(layers: list[PolyLoRALinear], state: dict[str, torch.Tensor]) -> None:
    """`state` keyed by module path, or by layer index ("0.lora_A", as KBs of format 2 and before are)."""
    by_index = {f"{i}.{k}": f"{l.path}.{k}" for i, l in enumerate(layers) for k in l.named_adapters()}
    if set(state) == set(by_index):
        state = {by_index[k]: v for k, v in state.items()}
    expected = set(inventory_state(layers))
    if set(state) != expected:
        raise ValueError(f"inventory tensors {sorted(set(state) ^ expected)[:4]} do not match the model's layers")
    with torch.no_grad():
        for layer in layers:
            for k, p in layer.named_adapters().items():
                p.copy_(state[f"{layer.path}.{k}"])


def per_layer(layers: list[PolyLoRALinear], weights: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's weights (B, K, H, M) from weights (B, G·H, M) or (B, G·H, K, M) (K mixtures summed), with
    G = len(layers) ("fine") or 1 ("coarse") and H the inventory's routing heads (a row's groups, head by head)."""
    h = layers[0].config.heads if layers else 1
    if weights.shape[1] not in (h, len(layers) * h):
        raise ValueError(f"weights for {weights.shape[1]} groups, but {len(layers)} adapted layers × {h} routing "
                         f"heads (or {h} for all layers)")
    w = (weights if weights.dim() == 4 else weights[:, :, None]).unflatten(1, (-1, h)).transpose(2, 3)  # (B,G,K,H,M)
    return [w[:, g if w.shape[1] > 1 else 0] for g in range(len(layers))]


@contextmanager
def mixing(layers: list[PolyLoRALinear], weights: torch.Tensor):
    """Route a batch: weights (B, G·H, M) or (B, G·H, K, M) as `per_layer` reads them. Adapters no row gives
    weight are left out (after a growth, old documents never weigh the new ones: their answers are computed
    exactly as before it). Always undone; context-local, so another thread using the same model meanwhile
    mixes with its own weights, or none."""
    weights = weights[..., :used_width(weights)]
    token = _MIXING.set({**_MIXING.get(), **dict(zip(layers, per_layer(layers, weights)))})
    cached = _MIXED.set(None if torch.is_grad_enabled() else {})
    try:
        yield
    finally:
        _MIXED.reset(cached)
        _MIXING.reset(token)


def recompute_context():
    """`context_fn` for activation checkpointing (torch.utils.checkpoint): the mixing in force when a layer ran
    forward, set again while the backward pass recomputes it (on the CPU in the calling thread, on a GPU in
    autograd's own thread, where the context variable would be empty: a recompute without adapters)."""
    captured = _MIXING.get()

    @contextmanager
    def again():
        token = _MIXING.set(captured)
        try:
            yield
        finally:
            _MIXING.reset(token)

    return nullcontext(), again()


def mixed(layer: PolyLoRALinear) -> torch.Tensor | None:
    """The weights `layer` mixes with in this context (None outside `mixing(...)`)."""
    return _MIXING.get().get(layer)


def used_width(weights: torch.Tensor) -> int:
    """1 + the last adapter any row gives a weight other than exactly 0 (at least 1), of weights (..., M)."""
    if weights.requires_grad:  # training: every adapter takes part (and no sync is needed)
        return weights.shape[-1]
    used = (weights != 0).reshape(-1, weights.shape[-1]).any(0).nonzero()
    return int(used.max()) + 1 if len(used) else 1


@torch.no_grad()
def grow_inventory(layers: list[PolyLoRALinear], n: int) -> InventoryConfig:
    """n more adapters on every layer; returns the inventory's config with the new M."""
    config = replace(layers[0].config, n_adapters=layers[0].config.n_adapters + n)
    for layer in layers:
        layer.grow(n)
        layer.config = config
    return config


@torch.no_grad()
def adapter_cosine(layers: list[PolyLoRALinear]) -> float | None:
    """Mean pairwise cosine between the inventory's B_m (flattened), averaged over layers: near 1 means the M
    adapters moved in lockstep and routing has nothing to choose between. None while every B is zero."""
    m = layers[0].config.n_adapters if layers else 0
    if m < 2:
        return None
    values = []
    for layer in layers:
        b = layer.lora_B.detach().float().reshape(m, -1)  # (M, d_out·r)
        if not b.abs().sum():
            continue
        unit = torch.nn.functional.normalize(b, dim=1)
        sim = unit @ unit.T  # (M, M)
        values.append(float((sim.sum() - sim.diagonal().sum()) / (m * (m - 1))))
    return sum(values) / len(values) if values else None
