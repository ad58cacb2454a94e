"""A view of a garbage-class classifier without its garbage logit, its linear head, and a
trained K-way classifier given a garbage output (to fine-tune it into a K+1-way one)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..scores import id_logits
from ..errors import InvalidTypeError


class DropOutput(nn.Module):
    """``model`` seen without output ``index``: K+1 logits become the K in-distribution ones.

    This is how the report applies MSP, ODIN, Energy and the rest to a garbage-class model
    ("garbage class excluded").  ``features`` is passed through unchanged and ``head`` drops
    the same logit, so ``weight``/``bias`` (for ViM) are the K remaining rows.
    """

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        self.model = model
        self.index = index

    def _keep(self, n: int) -> list[int]:
        g = self.index % n
        return [i for i in range(n) if i != g]

    def forward(self, x: Tensor) -> Tensor:
        return id_logits(self.model(x), self.index)

    def features(self, x: Tensor) -> Tensor:
        return self.model.features(x)

    def head(self, f: Tensor) -> Tensor:
        return id_logits(self.model.head(f), self.index)

    def last_layer(self) -> tuple[Tensor, Tensor]:
        """``(W, b)`` of the final linear layer without the dropped row."""
        w, b = last_linear(self.model)
        keep = torch.tensor(self._keep(w.shape[0]))
        return w[keep], b[keep]


def head_linear(model: nn.Module) -> nn.Linear:
    """``model``'s final ``nn.Linear`` (its classifier head), the module itself (e.g. for VOS,
    which scores virtual outlier features through it)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) and hasattr(model, "model") and hasattr(model.model, "get_classifier"):
        head = model.model.get_classifier()
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise InvalidTypeError(f"{type(model).__name__} has no nn.Linear head")
        head = linears[-1]
    return head


def last_linear(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``model``'s final ``nn.Linear`` (its classifier head)."""
    if isinstance(model, DropOutput):
        return model.last_layer()
    head = head_linear(model)
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    return head.weight.detach(), bias.detach()


@torch.no_grad()
def add_garbage_output(model: nn.Module) -> nn.Module:
    """Give a trained K-way classifier a (K+1)-th output, the garbage class, in place; returns
    ``model``.  Its final ``nn.Linear`` (:func:`head_linear`) is replaced by one with K + 1 rows:
    the K trained rows unchanged, and a garbage row that is their mean (weight and bias), so the
    garbage logit starts as the mean of the K logits: far below the top logit on images the
    model is sure of, level with it where the model cannot tell the classes apart.  Then train
    it with :class:`~niood_plugin.InversionTrainer` (``pretrain_epochs=0``: a fine-tune)."""
    head = head_linear(model)
    owner, name = next(((m, n) for m in model.modules() for n, child in m.named_children() if child is head),
                       (None, None))
    if owner is None:
        raise InvalidTypeError(f"add_garbage_output: {type(model).__name__}'s head is not a submodule it holds")
    new = nn.Linear(head.in_features, head.out_features + 1, bias=head.bias is not None,
                    device=head.weight.device, dtype=head.weight.dtype)
    new.weight.copy_(torch.cat([head.weight, head.weight.mean(0, keepdim=True)]))
    if head.bias is not None:
        new.bias.copy_(torch.cat([head.bias, head.bias.mean(0, keepdim=True)]))
    new.weight.requires_grad_(head.weight.requires_grad)
    setattr(owner, name, new)
    return model

