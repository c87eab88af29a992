"""The two-view interop step: shapes through a DataLoader, the joint law of the realised boxes, seeding, examples."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats

from jointaug.interop import JointTwoCrops, pair_params, two_view_policy
from jointaug.sampling import JCLaw, crop_policy

ROOT = Path(__file__).resolve().parents[1]
P_MIN = 1e-3


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """A user's per-view transform (torch only): PIL -> normalised float tensor, random flip."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    return (x.flip(-1) if torch.rand(()) < 0.5 else x) - 0.5


class _Images(torch.utils.data.Dataset):
    def __init__(self, transform, sizes=((40, 56), (64, 48), (33, 33))):
        self.images = [Image.fromarray(_picture(h, w, k)) for k, (h, w) in enumerate(sizes)]
        self.transform = transform

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.transform(self.images[i % len(self.images)]), i


def test_dataloader_gives_views_and_collated_params():
    step = JointTwoCrops(_to_tensor, crop="joint", beta=0.0, size=(16, 24), seed=0, return_params=True)
    loader = torch.utils.data.DataLoader(_Images(step), batch_size=4)
    (views, params), idx = next(iter(loader))
    assert len(views) == 2 and all(v.shape == (4, 3, 16, 24) and v.dtype == torch.float32 for v in views)
    assert params["box"].shape == (4, 2, 4) and params["log_area_ratio"].shape == (4,)
    assert params["image_hw"].tolist() == [[40, 56], [64, 48], [33, 33], [40, 56]]
    box, hw = params["box"], params["image_hw"]  # boxes lie inside their images
    assert bool((box[..., 0] >= 0).all() and (box[..., 0] + box[..., 2] <= hw[:, None, 1]).all())
    assert bool((box[..., 1] >= 0).all() and (box[..., 1] + box[..., 3] <= hw[:, None, 0]).all())
    area = box[..., 2] * box[..., 3] / (hw[:, 0] * hw[:, 1])[:, None]
    torch.testing.assert_close(params["log_area_ratio"], torch.log(area[:, 1] / area[:, 0]), rtol=0, atol=1e-5)


def test_views_are_the_boxes_resized_and_types_follow_the_input():
    img = torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(1))
    step = JointTwoCrops(size=(9, 11), seed=3)
    views = step(img)
    p = step.last_params
    for v in range(2):  # each view is its box, resized with antialiased bilinear (computed here directly)
        x0, y0, w, h = (int(t) for t in p.box[0, v].tolist())
        ref = F.interpolate(img[None, :, y0:y0 + h, x0:x0 + w], size=(9, 11), mode="bilinear",
                            align_corners=False, antialias=True)[0]
        torch.testing.assert_close(views[v], ref, rtol=0, atol=1e-6)  # float32 rounding of values in [0, 1]
    assert [v.dtype for v in step((img * 255).round().to(torch.uint8))] == [torch.uint8] * 2
    pil = step(Image.fromarray(_picture(30, 40)))
    assert all(isinstance(v, Image.Image) and v.size == (11, 9) and v.mode == "RGB" for v in pil)
    arr = step(_picture(30, 40))  # numpy H x W x C
    assert all(v.shape == (3, 9, 11) and v.dtype == torch.uint8 for v in arr)

    class Sub(torch.Tensor):  # stands in for torchvision.tv_tensors.Image
        pass

    assert all(type(v) is torch.Tensor for v in step(img.as_subclass(Sub)))


def test_per_view_transforms_and_replay():
    step = JointTwoCrops([lambda x: ("first", x.size), lambda x: ("second", x.size)], size=8, seed=0)
    (a, b) = step(Image.fromarray(_picture(20, 20)))
    assert a == ("first", (8, 8)) and b == ("second", (8, 8))
    plain = JointTwoCrops(size=8, seed=0, blur="joint", blur_p=1.0, color="joint", flip_p=0.5)
    img = torch.rand(3, 30, 30)
    views = plain(img)
    again = plain.crops(img, plain.last_params)  # rendering draws nothing: the params replay the views
    assert all(torch.equal(u, v) for u, v in zip(views, again))
    assert bool(plain.last_params.blur_apply.all())


def test_joint_law_of_realised_boxes():
    """ln(area_1 / area_0) of the realised boxes follows JC(beta) on the scale range (KS), and not the
    independent law: a step that draws the crops independently fails the same test (power check)."""
    img = torch.zeros(3, 224, 224, dtype=torch.uint8)
    step = JointTwoCrops(crop="joint", beta=0.0, size=4, scale=(0.2, 1.0), seed=11)
    _, last = step(img, return_params=True)  # a call reports the realised boxes it used
    assert torch.equal(last["box"], step.last_params.box[0])
    law = JCLaw(0.0, 0.2, 1.0)
    draws = [step.sample((224, 224)) for _ in range(1000)]  # the step's own per-call stream (no pixels)
    l = np.array([float(pair_params(p)["log_area_ratio"]) for p in draws])
    assert stats.kstest(l, law.log_ratio_cdf).pvalue > P_MIN
    indep = JointTwoCrops(crop="random", size=4, scale=(0.2, 1.0), seed=11)
    l = np.array([float(pair_params(indep.sample((224, 224)))["log_area_ratio"]) for _ in range(1000)])
    assert stats.kstest(l, law.log_ratio_cdf).pvalue < P_MIN
    for beta in (-2.0, 2.0):  # other betas, many images per draw (same policy as the step's)
        p = JointTwoCrops(beta=beta, size=4).policy.sample(torch.tensor([[224, 224]] * 5000),
                                                            torch.Generator().manual_seed(12))
        a = p.area.double()
        assert stats.kstest(torch.log(a[:, 1] / a[:, 0]).numpy(), JCLaw(beta, 0.2, 1.0).log_ratio_cdf).pvalue > P_MIN


def test_default_policy_is_the_analysis_crop_policy():
    """Crops only, J-Crop(beta) on views (0, 1): the same boxes as crop_policy for the same generator."""
    hw = torch.tensor([[100, 80]] * 50)
    a = two_view_policy(beta=-1.0, size=32).sample(hw, torch.Generator().manual_seed(5))
    b = crop_policy("joint", beta=-1.0, size=32).sample(hw, torch.Generator().manual_seed(5))
    assert torch.equal(a.box, b.box)
    assert not (a.color_apply.any() or a.blur_apply.any() or a.flip.any() or a.gray.any())


def _run_loader(seed: int, step_seed: int = 7):
    step = JointTwoCrops(_to_tensor, crop="joint", beta=0.0, size=4, seed=step_seed, return_params=True)
    loader = torch.utils.data.DataLoader(_Images(step), batch_size=4, num_workers=2,
                                         generator=torch.Generator().manual_seed(seed))
    return torch.cat([params["box"] for (_views, params), _ in loader])  # [8, 2, 4]; batch k from worker k


def test_worker_seeding_is_reproducible_and_distinct():
    a, b = _run_loader(0), _run_loader(0)
    assert torch.equal(a, b)  # same seeds, 2 workers -> identical parameters
    assert not torch.equal(a, _run_loader(1))  # another loader seed
    assert not torch.equal(a, _run_loader(0, step_seed=8))  # another step seed
    same_image = a[[0, 3]]  # items 0 and 3 are the same image, drawn by worker 0 ...
    assert not torch.equal(same_image[0], same_image[1])
    assert not torch.equal(a[0], a[6])  # ... and by worker 1 (item 6): streams differ


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="must draw 2 views"):
        JointTwoCrops(policy=two_view_policy().__class__(views=two_view_policy().views * 2))
    with pytest.raises(ValueError, match="crop must be one of"):
        JointTwoCrops(crop="jiont")
    with pytest.raises(TypeError, match="pair of callables"):
        JointTwoCrops([print, print, print])
    with pytest.raises(ValueError, match="either policy= or policy keywords"):
        JointTwoCrops(policy=two_view_policy(), beta=1.0)
    with pytest.raises(TypeError, match="expected a PIL image, tensor or numpy array"):
        JointTwoCrops()("image.png")
    assert set(pair_params(two_view_policy().sample((10, 10)))) >= {"box", "area", "log_area_ratio", "blur_sigma"}


_NO_TV = importlib.util.find_spec("torchvision") is None


@pytest.mark.skipif(_NO_TV, reason="torchvision is not importable here (its PyPI build fails against this torch)")
def test_torchvision_v2_transforms_follow():
    from torchvision.transforms import v2

    t = v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(0.4, 0.4), v2.ToDtype(torch.float32, scale=True)])
    step = JointTwoCrops(t, size=12, seed=0)
    for img in (Image.fromarray(_picture(30, 40)), torch.from_numpy(_picture(30, 40)).permute(2, 0, 1)):
        out = step(img)
        assert len(out) == 2


# ---------------------------------------------------------------- the examples, run as scripts
def _run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_torchvision_style_example_runs():
    out = _run_example("torchvision_style.py", "--steps", "2", "--batch", "8", "--workers", "0")
    lines = [ln for ln in out.splitlines() if ln.startswith("step ")]
    assert len(lines) == 2 and "views (8, 3, 32, 32)" in lines[0]
    assert all(math.isfinite(float(ln.split("loss ")[1].split()[0])) for ln in lines)


@pytest.mark.skipif(importlib.util.find_spec("lightly") is None,
                    reason="lightly is not importable here (installing it would pull torchvision and a new torch)")
def test_lightly_style_example_runs():
    out = _run_example("lightly_style.py", "--steps", "2", "--batch", "8", "--workers", "0")
    assert sum(ln.startswith("step ") for ln in out.splitlines()) == 2
