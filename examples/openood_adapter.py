"""Our method and detector inside OpenOOD (needs OpenOOD: pip install git+https://github.com/Jingkang50/OpenOOD).

    python examples/openood_adapter.py --tiny   # digits, CPU: OpenOOD's trainer loop and metrics
    python examples/openood_adapter.py CHECKPOINT   # CIFAR-10 with OpenOOD's Evaluator (downloads; CUDA)

``--tiny`` trains a K+1-way classifier with ``InversionOpenOODTrainer`` (OpenOOD's trainer
shape and optimiser, our garbage class) on OpenOOD-style dict batches, scores ID digits and
uniform noise with ``UEPostprocessor.inference`` and prints OpenOOD's own
``compute_all_metrics`` (FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC).  The full run hands the
postprocessor to OpenOOD's ``Evaluator`` for its near/far CIFAR-10 table.
"""
import argparse

# the arguments are read before OpenOOD is imported, so --help and a mistyped flag need no OpenOOD
parser = argparse.ArgumentParser(description="Our method and detector inside OpenOOD.")
parser.add_argument("--tiny", action="store_true", help="digits on the CPU: OpenOOD's trainer loop and metrics")
parser.add_argument("checkpoint", nargs="?", help="the full run: the state_dict of "
                    "OpenOODNet(ResNet18_32x32(num_classes=11)) as InversionOpenOODTrainer trained it")
args = parser.parse_args()  # unknown arguments end the run with exit code 2
if args.tiny == (args.checkpoint is not None):
    parser.error("pass either --tiny or CHECKPOINT (the full CIFAR-10 run), not both or neither")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from openood.evaluators.metrics import compute_all_metrics  # noqa: E402
from openood.utils import Config  # noqa: E402

from niood_plugin import GarbageSampler, presets  # noqa: E402
from niood_plugin.integrations.openood import InversionOpenOODTrainer, OpenOODNet, UEPostprocessor  # noqa: E402
from niood_plugin.models import build_classifier  # noqa: E402

if args.tiny:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = F.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None] / 16, size=(28, 28), mode="bilinear")
    x, y = (2 * x - 1).clamp(-1, 1), torch.tensor(d.target)
    train = [{"data": x[i:i + 32], "label": y[i:i + 32]} for i in range(0, 1400, 32)]
    config = Config({"optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "num_epochs": 3},
                     "dataset": {"num_classes": 10}, "seed": 0})
    torch.manual_seed(0)
    net = build_classifier("report28", num_outputs=11, in_channels=1, ncf=16)
    garbage = GarbageSampler(10, (1, 28, 28), **presets.get_preset("smoke").garbage, channels_last=False)
    trainer = InversionOpenOODTrainer(net, train, config, garbage=garbage)
    for epoch in range(1, config.optimizer.num_epochs + 1):
        net, metrics = trainer.train_epoch(epoch)
        print(f"epoch {metrics['epoch_idx']}: loss {metrics['loss']:.3f}, garbage images {len(garbage)}")
    test = [{"data": x[1400:], "label": y[1400:]},
            {"data": torch.rand(397, 1, 28, 28) * 2 - 1, "label": -torch.ones(397, dtype=torch.long)}]
    pred, conf, label = UEPostprocessor(garbage_index=10).inference(net.eval(), test)
    fpr, auroc, aupr_in, aupr_out, acc = compute_all_metrics(conf, label, pred)
    print(f"OpenOOD metrics, ID digits vs uniform noise: FPR@95 {100 * fpr:.2f}  AUROC {100 * auroc:.2f}  "
          f"AUPR_IN {100 * aupr_in:.2f}  AUPR_OUT {100 * aupr_out:.2f}  ACC {100 * acc:.2f}")
else:  # pragma: no cover - needs OpenOOD's data (downloaded) and a GPU (its Evaluator calls .cuda())
    # CHECKPOINT: the state_dict of OpenOODNet(ResNet18_32x32(num_classes=11)) as InversionOpenOODTrainer
    # trained it, on images normalised to [-1, 1]
    from openood.evaluation_api import Evaluator
    from openood.networks import ResNet18_32x32
    from torchvision import transforms as T

    net = OpenOODNet(ResNet18_32x32(num_classes=11)).cuda()
    net.load_state_dict(torch.load(args.checkpoint, map_location="cuda"))
    to_pm1 = T.Compose([T.Lambda(lambda im: im.convert("RGB")), T.Resize(32), T.CenterCrop(32), T.ToTensor(),
                        T.Normalize((0.5,) * 3, (0.5,) * 3)])  # [-1, 1], as in training, not OpenOOD's mean/std
    evaluator = Evaluator(net, id_name="cifar10", preprocessor=to_pm1,
                          postprocessor=UEPostprocessor(garbage_index=10), batch_size=200)
    print(evaluator.eval_ood())
