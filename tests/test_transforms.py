"""Per-image transform: shapes and dtypes for every recipe, seeding, DataLoader workers, odd images."""

import numpy as np
import pytest
import torch
from PIL import Image

from jointaug.render.batched import render_views
from jointaug.sampling import ViewParams, recipe_names
from jointaug.transforms import JointViews, to_rgb_tensor


def picture(h=40, w=48, mode="RGB"):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    return img.convert(mode) if mode != "RGB" else img


@pytest.mark.parametrize("recipe", recipe_names())
@pytest.mark.parametrize("joint", [False, True])
def test_every_recipe_gives_views_of_the_requested_shape(recipe, joint):
    kw = dict(crop="joint", color="joint") if joint else {}
    if joint and recipe not in ("small", "mocov1"):
        kw["blur"] = "joint"
    t = JointViews(recipe, size=24, seed=0, **kw)
    views = t(picture())
    assert len(views) == t.policy.num_views
    for v, (h, w) in zip(views, t.policy.out_hw):
        assert v.shape == (3, h, w) and v.dtype == torch.float32 and torch.isfinite(v).all()
    assert views[0].shape == (3, 24, 24)


def test_same_seed_same_views_and_params_replay():
    a = JointViews("simclr", crop="joint", size=16, seed=3)
    b = JointViews("simclr", crop="joint", size=16, seed=3)
    img = picture()
    for _ in range(3):
        (va, pa), (vb, pb) = a(img, return_params=True), b(img, return_params=True)
        assert pa == pb and all(torch.equal(x, y) for x, y in zip(va, vb))
    assert isinstance(pa, ViewParams)
    again = render_views(to_rgb_tensor(img)[None], pa, mode="exact", mean=a.mean, std=a.std)
    assert all(torch.equal(x[0], y) for x, y in zip(again, va))
    c = JointViews("simclr", crop="joint", size=16, seed=4)
    assert not torch.equal(c(img)[0], a(img)[0])


def test_odd_inputs_become_rgb():
    t = JointViews("small", size=8, seed=0, normalize=False)
    for mode in ("L", "RGBA", "P", "I;16", "LA"):
        views = t(picture(mode=mode))
        assert views[0].shape == (3, 8, 8) and 0 <= float(views[0].min()) and float(views[0].max()) <= 1
    assert t(torch.zeros(1, 5, 5, dtype=torch.uint8))[0].shape == (3, 8, 8)
    assert t(torch.rand(4, 6, 7))[0].shape == (3, 8, 8)  # RGBA float: alpha dropped
    assert t(np.zeros((9, 9, 3), dtype=np.uint8))[0].shape == (3, 8, 8)
    assert t(picture(1, 1))[0].shape == (3, 8, 8)  # a 1x1 image still gives views
    with pytest.raises(ValueError, match="at least one pixel"):
        t(torch.zeros(3, 0, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="5 channels"):
        t(torch.zeros(5, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        t(torch.full((3, 4, 4), 2.0))
    with pytest.raises(TypeError, match="PIL image, numpy array or tensor"):
        t("not an image")


class _SameImage(torch.utils.data.Dataset):
    def __init__(self, transform):
        self.transform, self.img = transform, picture(32, 32)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.stack(self.transform(self.img))


def _load(seed, workers=2):
    ds = _SameImage(JointViews("small", crop="joint", size=16, seed=7))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers,
                                         generator=torch.Generator().manual_seed(seed))
    return torch.cat(list(loader))  # [8, V, 3, 16, 16]; batch k comes from worker k


def test_dataloader_workers_are_distinct_and_seeded():
    a, b, c = _load(0), _load(0), _load(1)
    assert torch.equal(a, b)  # same seeds -> same views
    assert not torch.equal(a[:4], a[4:])  # worker 0 and worker 1 draw differently
    assert not torch.equal(a, c)
    for i in range(1, 4):  # and successive images of one worker differ too
        assert not torch.equal(a[0], a[i])


def test_dataloader_epochs_draw_new_views():
    ds = _SameImage(JointViews("small", crop="joint", size=16, seed=7))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    first, second = torch.cat(list(loader)), torch.cat(list(loader))
    assert not torch.equal(first, second)
