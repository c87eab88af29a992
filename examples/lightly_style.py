"""Joint views in a lightly training loop: jointaug's two-view step in place of lightly's MultiViewTransform.

lightly's ``MultiViewTransform(transforms=[t0, t1])`` applies each view transform to the image on its
own, so the two crops are independent. ``JointTwoCrops([t0, t1], crop="joint", beta=...)`` is called
the same way (image in, list of views out) but draws the pair's boxes jointly first, then hands each
crop to t0 / t1 (lightly-style per-view transforms without their crop). Loss and head are lightly's.
Needs lightly (and the torchvision it depends on).

    python examples/lightly_style.py --steps 20 --workers 2 --beta 0
"""

from __future__ import annotations

import argparse

import torch
import torchvision.transforms as T
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from PIL import Image

from jointaug.data.synthetic import make_synthetic
from jointaug.interop import JointTwoCrops
from jointaug.models import ConvNet4

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def view_transform(blur_p: float) -> T.Compose:
    """A SimCLR/BYOL-style view transform (PIL in, tensor out) without RandomResizedCrop."""
    return T.Compose([
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=blur_p),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


class Images(torch.utils.data.Dataset):
    """Any dataset that passes a PIL image to ``transform`` (e.g. torchvision.datasets.CIFAR10)."""

    def __init__(self, n: int, transform: object) -> None:
        self.images, self.labels = make_synthetic(n, size=48, seed=0)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i].transpose(1, 2, 0))), int(self.labels[i])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    # asymmetric per-view transforms, as BYOL's (blur p 1.0 and 0.1), joined by J-Crop(beta)
    transform = JointTwoCrops([view_transform(1.0), view_transform(0.1)], crop="joint", beta=args.beta,
                              size=args.size, scale=(0.08, 1.0), seed=args.seed)
    data = Images(max(args.batch * args.steps, args.batch), transform)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    backbone = ConvNet4(width=16)
    head = SimCLRProjectionHead(backbone.feature_dim, 128, 64)
    criterion = NTXentLoss(temperature=0.2)
    opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-3)
    for i, ((x0, x1), _labels) in enumerate(loader):
        if i >= args.steps:
            break
        loss = criterion(head(backbone(x0)), head(backbone(x1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {i}: loss {loss.item():.4f}  views {tuple(x0.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
