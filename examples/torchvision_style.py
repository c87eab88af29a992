"""Joint views in a torchvision-style training loop (the J-Crop authors' TwoCropsTransform pattern).

Your Dataset returns PIL images through ``transform=``; the transform is jointaug's two-view step
(J-Crop(beta) draws the pair's boxes jointly) followed by your own per-view transform. With
torchvision installed, the per-view transform is torchvision.transforms.v2; without it, a few lines
of plain torch do the same job, so this script runs anywhere jointaug does.

    python examples/torchvision_style.py --steps 20 --workers 2 --beta 0
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from jointaug.data.synthetic import make_synthetic
from jointaug.interop import JointTwoCrops
from jointaug.models import ConvNet4

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def per_view_transform() -> object:
    """What you already have: flip, colour jitter, grayscale, to tensor, normalise (no crop: jointaug does it)."""
    if importlib.util.find_spec("torchvision") is not None:
        from torchvision.transforms import v2

        return v2.Compose([
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ])

    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)

    def fallback(img: Image.Image) -> torch.Tensor:  # torch only: flip, brightness jitter, normalise
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if torch.rand(()) < 0.8:
            x = (x * (0.6 + 0.8 * torch.rand(()))).clamp(0, 1)
        return (x - mean) / std

    return fallback


class PILImages(torch.utils.data.Dataset):
    """Stands in for e.g. torchvision.datasets.CIFAR10(root, transform=...): PIL image in, transform applied."""

    def __init__(self, n: int, size: int, transform: object) -> None:
        self.images, self.labels = make_synthetic(n, size=size, seed=0)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i].transpose(1, 2, 0))
        return self.transform(img), int(self.labels[i])


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=32, help="view size")
    ap.add_argument("--beta", type=float, default=0.0, help="J-Crop(beta)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    step = JointTwoCrops(per_view_transform(), crop="joint", beta=args.beta, size=args.size, scale=(0.2, 1.0),
                         seed=args.seed, return_params=True)
    data = PILImages(max(args.batch * args.steps, args.batch), 48, step)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    backbone = ConvNet4(width=16)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i, ((views, params), _labels) in enumerate(loader):
        if i >= args.steps:
            break
        v1, v2 = views
        loss = info_nce(model(v1), model(v2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ratio = params["log_area_ratio"].abs().exp()  # the drawn pair's area ratio, for logging
        print(f"step {i}: loss {loss.item():.4f}  views {tuple(v1.shape)}  "
              f"mean area ratio {ratio.mean():.2f}  share beyond 2:1 {(ratio > 2).float().mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
