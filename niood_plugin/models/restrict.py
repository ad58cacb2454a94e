"""Views of a garbage-class classifier: drop the garbage logit, or merge several into one."""
from __future__ import annotations

import torch
from torch import Tensor, nn


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
        out = self.model(x)
        return out[:, self._keep(out.shape[1])]

    def features(self, x: Tensor) -> Tensor:
        return self.model.features(x)

    def head(self, f: Tensor) -> Tensor:
        out = self.model.head(f)
        return out[:, self._keep(out.shape[1])]

    def last_layer(self) -> tuple[Tensor, Tensor]:
        """``(W, b)`` of the final linear layer without the dropped row."""
        if isinstance(self.model, MergeGarbage):  # dropping the merged garbage logit leaves the K ID rows
            w, b = last_linear(self.model.model)
            k = self.model.num_classes
            if self.index % (k + 1) != k:
                raise ValueError("on a MergeGarbage model only the (merged) garbage output, index -1 or K, can be dropped")
            return w[:k], b[:k]
        w, b = last_linear(self.model)
        keep = torch.tensor(self._keep(w.shape[0]))
        return w[keep], b[keep]


class MergeGarbage(nn.Module):
    """A classifier with K ID outputs and G garbage outputs seen as a K+1-way one.

    The G garbage logits (outputs ``K .. K+G-1``, e.g. one per ID class when trained with
    ``garbage_classes="per-class"``) become one, their log-sum-exp.  This is exact: the softmax
    of the merged logits gives every ID class the same probability as before and the garbage
    output the *sum* of the G garbage probabilities, so every K+1 detector (UE, garbage
    probability, DropOutput + MSP, ...) applies unchanged.
    """

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.model = model
        self.num_classes = num_classes

    def _merge(self, out: Tensor) -> Tensor:
        k = self.num_classes
        if out.shape[1] <= k:
            raise ValueError(f"the model has {out.shape[1]} outputs: no garbage outputs after the {k} ID ones")
        return torch.cat([out[:, :k], torch.logsumexp(out[:, k:], dim=1, keepdim=True)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self._merge(self.model(x))

    def features(self, x: Tensor) -> Tensor:
        return self.model.features(x)

    def head(self, f: Tensor) -> Tensor:
        return self._merge(self.model.head(f))


def last_linear(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``model``'s final ``nn.Linear`` (its classifier head)."""
    if isinstance(model, DropOutput):
        return model.last_layer()
    if isinstance(model, MergeGarbage):
        raise TypeError("MergeGarbage's head is not linear (log-sum-exp of the garbage logits); "
                        "wrap it in DropOutput(..., index=-1) to get the K linear ID rows")
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) and hasattr(model, "model") and hasattr(model.model, "get_classifier"):
        head = model.model.get_classifier()
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f"{type(model).__name__} has no nn.Linear head")
        head = linears[-1]
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    return head.weight.detach(), bias.detach()
