"""OpenOOD adapter: our detector as an OpenOOD postprocessor, our method as an OpenOOD trainer.

Needs OpenOOD (``pip install git+https://github.com/Jingkang50/OpenOOD``; it is not on PyPI)::

    from openood.evaluation_api import Evaluator
    from niood_plugin.integrations.openood import UEPostprocessor

    net = OpenOODNet(ResNet18_32x32(num_classes=11))      # K + 1 outputs, the garbage last
    evaluator = Evaluator(net, id_name="cifar10", postprocessor=UEPostprocessor(garbage_index=10))
    evaluator.eval_ood()                                  # OpenOOD's table, our UE as the confidence

OpenOOD's confidence is "higher = in-distribution", so the postprocessor returns ``-UE``.
:class:`InversionOpenOODTrainer` has OpenOOD's trainer shape (``__init__(net, train_loader,
config)``, ``train_epoch(epoch_idx) -> (net, {"epoch_idx", "loss"})``) and OpenOOD's optimiser
and schedule (it is a ``BaseTrainer``); each epoch after the first refreshes the garbage class
by inversion and trains on ID + garbage with pytorch-ood's ``BackgroundClassLoss``.  Unlike
OpenOOD's own classes, both run on the network's device (CPU included).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from pytorch_ood.loss import BackgroundClassLoss
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..devices import module_device
from ..garbage import GarbageSampler
from .convert import REQUIRED, batch_xy, check_garbage_index, openood_confidence, ue_and_prediction
from ..errors import InvalidArgumentError

try:
    from openood.postprocessors.base_postprocessor import BasePostprocessor
    from openood.trainers.base_trainer import BaseTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("niood_plugin.integrations.openood needs OpenOOD: pip install "
                      "git+https://github.com/Jingkang50/OpenOOD (it is not on PyPI)") from exc

__all__ = ["UEPostprocessor", "InversionOpenOODTrainer", "OpenOODNet"]


class OpenOODNet(nn.Module):
    """An OpenOOD network (``forward(x, return_feature=True) -> (logits, features)``, ``fc``) with
    the ``features``/``head`` our trainers and detectors use."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, **kwargs: Any) -> Any:
        return self.net(x, **kwargs)

    def features(self, x: Tensor) -> Tensor:
        return self.net(x, return_feature=True)[1]

    def head(self, f: Tensor) -> Tensor:
        return self.net.get_fc_layer()(f) if hasattr(self.net, "get_fc_layer") else self.net.fc(f)


class UEPostprocessor(BasePostprocessor):
    """UE of a K+1-way model (garbage output ``garbage_index``) as OpenOOD's confidence.

    :param config: OpenOOD's postprocessor config, if any (UE has no hyperparameters to search)
    :param garbage_index: required: the output trained as the garbage class (``K``), or
        ``None`` for a plain K-way model (plain UE); the network's outputs do not say which
        one is the garbage output, so there is no default
    :param variant: :class:`~niood_plugin.UEDetector`'s variant (default ``"combined"``)
    """

    def __init__(self, config: Any = None, garbage_index: Any = REQUIRED, variant: str = "combined"):
        super().__init__(config)
        self.garbage_index, self.variant = check_garbage_index(garbage_index, variant, "UEPostprocessor"), variant
        self.APS_mode = False                 # the Evaluator reads both; nothing to search
        self.hyperparam_search_done = True

    def setup(self, net: nn.Module, id_loader_dict: Any, ood_loader_dict: Any) -> None:
        """UE is computed from the logits alone: nothing to fit."""

    @torch.no_grad()
    def postprocess(self, net: nn.Module, data: Tensor) -> tuple[Tensor, Tensor]:
        """``(pred, conf)``: the ID class and ``-UE``."""
        scores, pred = ue_and_prediction(net(data), self.garbage_index, self.variant)
        return pred, openood_confidence(scores)

    def inference(self, net: nn.Module, data_loader: DataLoader, progress: bool = True):
        """OpenOOD's ``inference`` on the network's device (its own calls ``.cuda()``)."""
        device = module_device(net) or torch.device("cpu")
        preds, confs, labels = [], [], []
        for batch in data_loader:
            x, y = batch_xy(batch)
            pred, conf = self.postprocess(net, x.to(device))
            preds.append(pred.cpu())
            confs.append(conf.cpu())
            labels.append(torch.as_tensor(y).cpu())
        return (torch.cat(preds).numpy().astype(int), torch.cat(confs).numpy(),
                torch.cat(labels).numpy().astype(int))


class InversionOpenOODTrainer(BaseTrainer):
    """OpenOOD trainer: OpenOOD's SGD and cosine schedule (``config.optimizer``), our garbage class.

    :param net: K + 1 outputs with ``features``/``head`` (wrap OpenOOD networks in :class:`OpenOODNet`)
    :param train_loader: OpenOOD's dict batches (or ``(x, y)``), images in [-1, 1]
    :param config: OpenOOD's config (``optimizer.{lr, momentum, weight_decay, num_epochs}``,
        ``dataset.num_classes`` = K)
    :param garbage: a :class:`~niood_plugin.GarbageSampler` (default: the library's for the
        images' shape, seeded by ``config.seed``); it is moved to the network's device and
        started for ``num_epochs - 1`` inversion epochs (OpenOOD's first epoch is pre-training)
    :param class_counts: ID images per class; default: counted in one pass over the loader

    The images must lie in [-1, 1], where the generator's garbage lies (OpenOOD's preprocessors
    normalise by the data set's mean and std instead: use ``Normalize(0.5, 0.5)``).
    """

    def __init__(self, net: nn.Module, train_loader: DataLoader, config: Any,
                 garbage: Optional[GarbageSampler] = None, class_counts: Optional[Tensor] = None):
        super().__init__(net, train_loader, config)
        k = int(config.dataset.num_classes)
        device = module_device(net) or torch.device("cpu")
        x0 = batch_xy(next(iter(train_loader)))[0]
        lo, hi = float(x0.min()), float(x0.max())
        if lo < -1.001 or hi > 1.001:
            raise InvalidArgumentError(f"InversionOpenOODTrainer: training images range over [{lo:.3g}, {hi:.3g}], the "
                             "garbage over [-1, 1]: normalise with Normalize(mean=0.5, std=0.5), not the data "
                             "set's mean and std, or the garbage class is told apart by its value range")
        if class_counts is None:
            labels = torch.cat([torch.as_tensor(batch_xy(b)[1]) for b in train_loader])
            class_counts = torch.bincount(labels.long(), minlength=k)
        self.garbage = garbage if garbage is not None else GarbageSampler(k, tuple(x0.shape[1:]),
                                                                          seed=int(getattr(config, "seed", 0) or 0))
        self.garbage.to(device)
        self.garbage.start(class_counts, epochs=max(int(config.optimizer.num_epochs) - 1, 1))
        self.loss = BackgroundClassLoss(n_classes=k)
        self.device = device

    def train_epoch(self, epoch_idx: int):
        if epoch_idx > 1:  # OpenOOD counts epochs from 1; the first trains on noise garbage only
            self.garbage.refresh(self.net)
        self.net.train()
        loss_avg = 0.0
        for batch, g in zip(self.train_loader, self.garbage.epoch(len(self.train_loader))):
            x, y = batch_xy(batch)
            x, y = x.to(self.device), y.to(self.device).long()
            neg = self.garbage.make_negatives(x, epoch_idx - 1)  # our epoch: 0 is pre-training
            g = g if neg is None else torch.cat([g, neg])
            logits = self.net(torch.cat([x, g]))
            loss = self.loss(logits, torch.cat([y, torch.full((g.shape[0],), -1, device=self.device)]))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_avg = loss_avg * 0.8 + float(loss.detach()) * 0.2  # OpenOOD's smoothed loss
        self.net.eval()
        return self.net, {"epoch_idx": epoch_idx, "loss": self.save_metrics(loss_avg)}
