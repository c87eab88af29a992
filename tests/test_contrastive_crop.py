"""ContrastiveCrop: heat-map boxes, region-centred crops (Beta centre law), data paths, config, resume.

Statistical checks use fixed seeds; a KS p-value must exceed 1e-3 (a false alarm ~1e-3 per check) and
every KS check is paired with a power check (the same statistic rejects the law it should not match).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from jointaug.augment import BatchViews
from jointaug.config import ConfigError, load_config
from jointaug.models import ResNet, resnet18, wrap_backbone
from jointaug.sampling import JCLaw, ViewPolicy, ViewSpec, make_policy
from jointaug.sampling.regions import check_regions, sample_beta
from jointaug.train.ccrop import RegionStore, boxes_from_heat, compute_regions, heat_maps
from jointaug.train.data import InMemoryViews, LoaderViews, WorkerViews, epoch_permutation

P_MIN = 1e-3


# ------------------------------------------------------------------------------------------ heat maps
class BrightnessNet(nn.Module):
    """A hand-built encoder: one feature channel = mean brightness over 4 x 4 cells (stride 4)."""

    def forward_maps(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x.mean(dim=1, keepdim=True), 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_maps(x).flatten(1)


class _Tagged(nn.Module):
    """BrightnessNet with a parameter (compute_regions reads device and dtype from one)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = BrightnessNet()
        self.w = nn.Parameter(torch.zeros(1))

    def forward_maps(self, x: Tensor) -> Tensor:
        return self.net.forward_maps(x)


def _square_image(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> Tensor:
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[:, rows[0]:rows[1], cols[0]:cols[1]] = 255
    return img


def test_box_from_a_real_heat_map_surrounds_the_bright_square() -> None:
    # square on rows 8..15, cols 16..27 of a black 32 x 32 image = feature cells rows 2-3, cols 4-6 (value 1,
    # others 0). Bilinear x4 upsampling (align_corners=False) puts output pixel i at source (i + 0.5) / 4 - 0.5,
    # so the first pixel above 0.1 is 2 px outside each edge (weight 0.125 on the bright cell): rows 6..17, cols 14..29
    img = _square_image(32, 32, (8, 16), (16, 28))[None]
    boxes = compute_regions(_Tagged(), img, threshold=0.1, mean=[0.5] * 3, std=[0.25] * 3)
    assert boxes.tolist() == [[14 / 32, 6 / 32, 30 / 32, 18 / 32]]
    # the heat map itself: normalised to [0, 1], 1 on the square, 0 far from it
    x = (img.float() / 255 - 0.5) / 0.25
    heat = heat_maps(BrightnessNet(), x)[0]
    assert heat.shape == (32, 32) and float(heat.min()) == 0.0 and float(heat.max()) == 1.0
    assert bool((heat[10:14, 18:26] == 1).all()) and float(heat[8:16, 16:28].min()) > 0.375
    assert float(heat[:4].max()) == 0.0
    # a higher threshold tightens the box: 0.625 on the square's edge pixels, 0.375 one pixel out
    assert boxes_from_heat(heat[None], 0.5).tolist() == [[16 / 32, 8 / 32, 28 / 32, 16 / 32]]


def test_flat_heat_map_and_threshold_edge_cases_give_whole_or_tight_boxes() -> None:
    flat = _square_image(32, 32, (0, 0), (0, 0))[None]  # all black: no location information
    assert compute_regions(_Tagged(), flat, threshold=0.1, mean=[0.5] * 3, std=[0.25] * 3).tolist() == \
        [[0.0, 0.0, 1.0, 1.0]]
    heat = torch.zeros(1, 8, 8)
    heat[0, 3, 5] = 1.0
    assert boxes_from_heat(heat, 0.0).tolist() == [[5 / 8, 3 / 8, 6 / 8, 4 / 8]]  # one pixel: its own cell


def test_compute_regions_on_a_data_set_of_varying_sizes_keeps_relative_coordinates() -> None:
    class DS(torch.utils.data.Dataset):
        # the square covers the same relative part (rows 1/4..1/2, cols 1/2..7/8) of two sizes
        items = [_square_image(64, 128, (16, 32), (64, 112)), _square_image(32, 64, (8, 16), (32, 56))]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            return self.items[i], 0

    boxes = compute_regions(_Tagged(), DS(), threshold=0.1, mean=[0.5] * 3, std=[0.25] * 3, size=32)
    # resized whole to 32 x 32: the square is on rows 8..15, cols 16..27 in both (as in the first test)
    assert boxes.tolist() == [[14 / 32, 6 / 32, 30 / 32, 18 / 32]] * 2


def test_resnet_forward_maps_is_the_map_before_pooling_and_wrappers_have_none() -> None:
    net = resnet18(cifar_stem=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = net.forward_maps(x)
        assert maps.shape == (2, 512, 4, 4)
        assert torch.allclose(net(x), maps.mean(dim=(2, 3)), atol=1e-6)
    assert isinstance(net, ResNet)
    pooled = wrap_backbone(nn.Sequential(nn.Conv2d(3, 4, 3)))  # a 4-D module wrapped with pooling: no maps
    with pytest.raises(ValueError, match="forward_maps"):
        compute_regions(pooled, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), threshold=0.1, mean=[0] * 3,
                        std=[1] * 3)


# ------------------------------------------------------------------------------------------ sampling
def _region_policy(crop: str = "random", alpha: float = 0.6, scale=(0.2, 1.0)) -> ViewPolicy:
    return make_policy("small", crop=crop, size=32, scale=scale, centre="region_beta", region_alpha=alpha)


def _random_regions(n: int, g: torch.Generator) -> Tensor:
    a, b = torch.rand(2, n, 2, generator=g)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    thin = torch.rand(n, generator=g) < 0.2  # some degenerate (zero-width) regions, some at the borders
    hi[thin] = lo[thin]
    edge = torch.rand(n, generator=g) < 0.2
    lo[edge, 0], hi[edge, 0] = 0.0, 0.05
    return torch.stack([lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]], dim=1)


@pytest.mark.parametrize("crop", ["random", "joint"])
def test_centres_stay_in_the_region_and_crops_in_the_image(crop: str) -> None:
    g = torch.Generator().manual_seed(3)
    n = 4000
    side = torch.randint(8, 80, (n,), generator=g)
    hw = torch.stack([side, (side * (0.8 + 0.4 * torch.rand(n, generator=g))).round().long()], dim=1)
    regions = _random_regions(n, g)
    p = _region_policy(crop).sample(hw, torch.Generator().manual_seed(4), regions=regions)
    box, c = p.box.double(), p.extra["region_centre"].double()
    H, W = hw[:, 0, None].double(), hw[:, 1, None].double()
    ok = ~p.fallback
    assert bool(ok.float().mean() > 0.9)
    x0, y0, w, h = box.unbind(-1)
    assert bool(((x0 >= 0) & (y0 >= 0) & (x0 + w <= W) & (y0 + h <= H)).all())  # never leaves the image
    for axis, (start, size, side) in enumerate(((x0, w, W), (y0, h, H))):
        lo, hi = regions[:, None, axis].double() * side, regions[:, None, axis + 2].double() * side
        f_lo, f_hi = size / 2, side - size / 2  # centres where the crop fits
        meets = (torch.maximum(lo, f_lo) <= torch.minimum(hi, f_hi)) & ok
        cc = c[..., axis]
        # drawn centre inside region and feasible range whenever they meet (1e-4: float32 storage) ...
        inside = (cc >= torch.maximum(lo, f_lo) - 1e-4) & (cc <= torch.minimum(hi, f_hi) + 1e-4)
        assert bool(inside[meets].all())
        # ... otherwise the crop covers the region on this axis
        covers = (start <= lo + 1e-4) & (start + size >= hi - 1e-4)
        assert bool(covers[~meets & ok].all())
        # the box is the drawn centre's, floored to whole pixels
        d = cc - (start + size / 2)
        assert bool(((d > -1e-4) & (d < 1 + 1e-4))[ok].all())
    # fallbacks keep the crop's own rule (J-Crop: the whole image)
    if crop == "joint" and bool(p.fallback.any()):
        whole = torch.cat([torch.zeros(n, 2, 2, dtype=torch.float64), torch.stack([W, H], -1).expand(n, 2, 2)], -1)
        assert bool((box[p.fallback] == whole[p.fallback]).all())


def _binned_p(t, alpha: float, bins: int = 10) -> float:
    """Chi-square p-value of samples ``t`` in [0, 1] against Beta(alpha, alpha) on equal-width bins."""
    edges = torch.linspace(0, 1, bins + 1).numpy()
    counts = torch.histc(torch.as_tensor(t).clamp(0, 1), bins, 0, 1).numpy()
    expected = len(t) * torch.as_tensor(stats.beta(alpha, alpha).cdf(edges)).diff().numpy()
    return float(stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue)


@pytest.mark.parametrize("alpha", [0.6, 0.1])
def test_centre_law_is_beta_alpha_alpha_within_the_box(alpha: float) -> None:
    # small crops on a large image, region well inside the feasible centres: the relative position of
    # the drawn centre in the region is exactly Beta(alpha, alpha) on each axis
    n, region = 8000, torch.tensor([0.2, 0.3, 0.7, 0.9])
    p = _region_policy(alpha=alpha, scale=(0.01, 0.02)).sample(
        torch.tensor([[1000, 1000]]).expand(n, 2), torch.Generator().manual_seed(11), regions=region.expand(n, 4))
    assert not bool(p.fallback.any())
    c = p.extra["region_centre"].double() / 1000.0
    for axis in (0, 1):
        t = ((c[..., axis] - region[axis]) / (region[axis + 2] - region[axis])).flatten().numpy()
        if alpha >= 0.5:
            assert stats.kstest(t, stats.beta(alpha, alpha).cdf).pvalue > P_MIN
            assert stats.kstest(t, "uniform").pvalue < P_MIN  # power: centre-suppressed, not uniform
        else:  # ~10% of Beta(0.1, 0.1) lies within 1e-7 of an edge, below the float32 centres' resolution:
            # chi-square on 10 equal-width bins instead of KS, with power against Beta(0.6, 0.6)
            assert _binned_p(t, alpha) > P_MIN and _binned_p(t, 0.6) < P_MIN
    # the two views' centres are independent (their correlation is within 4.5 standard errors of 0)
    r = torch.corrcoef(torch.stack([c[:, 0, 0], c[:, 1, 0]]))[0, 1]
    assert abs(float(r)) < 4.5 / math.sqrt(n)


def test_beta_sampler_matches_the_beta_law_and_the_generator_fixes_it() -> None:
    for a in (0.6, 1.0, 4.0):
        x = sample_beta((20000,), a, torch.Generator().manual_seed(5))
        assert stats.kstest(x.numpy(), stats.beta(a, a).cdf).pvalue > P_MIN
    a1 = sample_beta((100,), 0.6, torch.Generator().manual_seed(1))
    assert torch.equal(a1, sample_beta((100,), 0.6, torch.Generator().manual_seed(1)))
    assert not torch.equal(a1, sample_beta((100,), 0.6, torch.Generator().manual_seed(2)))


def test_jcrop_area_law_is_unchanged_by_region_centres() -> None:
    n, gen = 8000, lambda: torch.Generator().manual_seed(21)  # noqa: E731
    hw = torch.tensor([[32, 32]]).expand(n, 2)
    regions = _random_regions(n, torch.Generator().manual_seed(22))
    cc = _region_policy("joint").sample(hw, gen(), regions=regions)
    twin = _region_policy("joint").with_centre("uniform").sample(hw, gen())
    # same areas, aspects, fallbacks and photometric draws as J-Crop with uniform positions: only the place moves
    assert torch.equal(cc.extra["target_area"], twin.extra["target_area"])
    assert torch.equal(cc.box[..., 2:], twin.box[..., 2:]) and torch.equal(cc.fallback, twin.fallback)
    for name in ("flip", "color_apply", "brightness", "hue", "gray", "color_order"):
        assert torch.equal(getattr(cc, name), getattr(twin, name))
    assert not torch.equal(cc.box[..., :2], twin.box[..., :2])
    log_r = torch.log(cc.extra["target_area"][:, 1].double() / cc.extra["target_area"][:, 0].double()).numpy()
    law = JCLaw(0.0, 0.2, 1.0)
    assert stats.kstest(log_r, law.log_ratio_cdf).pvalue > P_MIN
    indep = stats.kstest(log_r, JCLaw(4.0, 0.2, 1.0).log_ratio_cdf).pvalue
    assert indep < P_MIN  # power: J-Crop(4)'s law is rejected


def test_regions_input_errors_name_the_problem() -> None:
    pol = _region_policy()
    hw = torch.tensor([[32, 32]]).expand(3, 2)
    with pytest.raises(ValueError, match=r"\[N, 4\].*N = 3"):
        pol.sample(hw, regions=torch.zeros(2, 4))
    bad = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.6, 0.1, 0.4, 0.9], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="image 1"):
        pol.sample(hw, regions=bad)
    with pytest.raises(ValueError, match="image 0"):
        check_regions(torch.tensor([[0.0, 0.0, 1.5, 1.0]]), 1)
    with pytest.raises(ValueError, match="no view of this policy has centre=.region_beta."):
        make_policy("small", size=32).sample(hw, regions=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="region_alpha"):
        ViewSpec(size=32, centre="region_beta", region_alpha=0.0)
    with pytest.raises(ValueError, match="centre"):
        make_policy("small", size=32, crop="gcc", centre="region_beta")
    # no regions: the whole image (the initial boxes)
    whole = pol.sample(hw, torch.Generator().manual_seed(0))
    assert whole.extra["region"].tolist() == [[[0.0, 0.0, 1.0, 1.0]] * 2] * 3


# ------------------------------------------------------------------------------------------ data paths
class _Spy:
    """Records the regions every policy.sample call receives (wraps a policy's bound method)."""

    def __init__(self) -> None:
        self.calls: list[Tensor | None] = []

    def wrap(self, policy: ViewPolicy) -> ViewPolicy:
        orig = policy.sample

        def sample(hw, gen=None, regions=None):
            self.calls.append(None if regions is None else regions.clone())
            return orig(hw, gen, regions=regions)

        object.__setattr__(policy, "sample", sample)
        return policy


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], 0


def test_data_paths_pass_each_batch_its_images_regions_after_the_warm_up() -> None:
    n, batch, seed = 24, 8, 7
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
    store = RegionStore(n, warmup_epochs=1, every=1, threshold=0.1)
    store.update(_random_regions(n, torch.Generator().manual_seed(1)), 1)
    bv = BatchViews(make_policy("small", size=16, centre="region_beta"))
    common = dict(global_batch=batch, rank=0, world=1, seed=seed, device=torch.device("cpu"), regions=store)

    mem = InMemoryViews(images, bv, **common)
    spy = _Spy()
    mem.policies = (spy.wrap(mem.policies[0]), spy.wrap(mem.policies[1]))
    plain = InMemoryViews(images, BatchViews(make_policy("small", size=16)), **{**common, "regions": None})
    warm = [torch.cat(v) for v in mem.epoch(0)]
    assert spy.calls == [None] * 3  # warm-up: ordinary crops ...
    assert all(torch.equal(a, torch.cat(b)) for a, b in zip(warm, plain.epoch(0)))  # ... bit-identical to them
    list(mem.epoch(1))
    perm = epoch_permutation(n, seed, 1)
    for s, got in enumerate(spy.calls[3:]):
        assert torch.equal(got, store.boxes[perm[s * batch:(s + 1) * batch]])

    loader = LoaderViews(_Images(images), bv, num_workers=0, **common)
    calls: list = []
    orig = loader.batch_views.from_list

    def from_list(imgs, gen, policy=None, regions=None):
        calls.append((policy.uses_regions, regions))
        return orig(imgs, gen, policy=policy, regions=regions)

    loader.batch_views = BatchViews(bv.policy)
    loader.batch_views.from_list = from_list  # type: ignore[method-assign]
    list(loader.epoch(0))
    list(loader.epoch(1, start_step=1))
    assert [c[0] for c in calls] == [False] * 3 + [True] * 2 and all(c[1] is None for c in calls[:3])
    for s, (_, got) in zip((1, 2), calls[3:]):
        assert torch.equal(got, store.boxes[perm[s * batch:(s + 1) * batch]])

    workers = WorkerViews(_Images(images), bv, num_workers=0, **common)
    ds = workers.loader.dataset
    wspy = _Spy()
    ds.policies = (wspy.wrap(ds.policies[0]), wspy.wrap(ds.policies[1]))
    ds[(5, 0)]
    ds[(5, 1)]
    assert wspy.calls[0] is None and torch.equal(wspy.calls[1], store.boxes[5:6])


def test_region_store_schedule_and_state() -> None:
    st = RegionStore(4, warmup_epochs=2, every=3, threshold=0.1)
    assert [st.active(e) for e in range(4)] == [False, False, True, True]
    assert [d for d in range(1, 12) if st.due(d, 11)] == [2, 5, 8]  # never after the last epoch
    st0 = RegionStore(4, warmup_epochs=0, every=2, threshold=0.1)
    assert st0.active(0) and [d for d in range(1, 7) if st0.due(d, 6)] == [2, 4]
    st.update(torch.tensor([[0.1, 0.2, 0.3, 0.4]]).repeat(4, 1), 2)
    other = RegionStore(4, warmup_epochs=2, every=3, threshold=0.1)
    other.load_state_dict(st.state_dict())
    assert torch.equal(other.boxes, st.boxes) and other.refreshed == [2]
    with pytest.raises(ValueError, match="shape"):
        RegionStore(5, warmup_epochs=2, every=3, threshold=0.1).load_state_dict(st.state_dict())


# ------------------------------------------------------------------------------------------ config
BASE = ["aug.ccrop=true", "aug.ccrop_warmup_epochs=1", "aug.ccrop_every=1"]


@pytest.mark.parametrize("override,key", [
    ("aug.ccrop_threshold=1.0", "aug.ccrop_threshold=1.0"),
    ("aug.ccrop_threshold=-0.1", "aug.ccrop_threshold=-0.1"),
    ("aug.ccrop_alpha=0", "aug.ccrop_alpha=0"),
    ("aug.ccrop_alpha=nan", "aug.ccrop_alpha=nan"),
    ("aug.ccrop_every=0", "aug.ccrop_every=0"),
    ("aug.ccrop_warmup_epochs=-1", "aug.ccrop_warmup_epochs=-1"),
    ("aug.ccrop_warmup_epochs=25", "aug.ccrop_warmup_epochs=25"),
    ("aug.crop=gcc", "aug.crop='gcc'"),
    ("model.backbone=timm:resnet18", "model.backbone='timm:resnet18'"),
])
def test_config_errors_name_key_and_value(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config("simclr/synthetic", [*BASE, override])
    assert str(exc.value).startswith(key)


def test_config_builds_the_region_policy_and_off_means_off() -> None:
    from jointaug.config import build_policy

    cfg = load_config("simclr/synthetic", [*BASE, "aug.crop=joint", "aug.ccrop_alpha=0.3"])
    pol = build_policy(cfg)
    assert all(v.centre == "region_beta" and v.region_alpha == 0.3 for v in pol.views)
    assert pol.couplings and "CCrop" in pol.name
    off = build_policy(load_config("simclr/synthetic", ["aug.ccrop_alpha=0.3"]))  # ccrop keys alone: no effect
    assert not off.uses_regions
    for name in ("simclr/ccrop-synthetic", "simclr/ccrop-cifar10"):
        assert load_config(name, ["data.download=true"] if "cifar" in name else []).aug.ccrop


# ------------------------------------------------------------------------------------------ training + resume
def _train_cfg(out: Path, *extra: str):
    return load_config("simclr/synthetic", [
        *BASE, "aug.crop=joint", "data.limit=256", "data.test_limit=100", "model.backbone_kwargs.width=8",
        "method.params.proj_hidden_dim=32", "method.params.proj_out_dim=16", "optim.batch_size=64",
        "optim.epochs=4", "optim.warmup_epochs=0", "train.knn_every=0", "eval.final=false",
        "train.progress=false", "train.tensorboard=false", "train.log_every=1", "aug.ccrop_threshold=0.5",
        f"train.out_dir={out}", *extra])


def test_boxes_are_run_state_and_survive_stop_and_resume(tmp_path: Path) -> None:
    from jointaug.train.trainer import Trainer

    torch.set_num_threads(1)
    ref = Trainer(_train_cfg(tmp_path / "ref"))
    ref.fit()
    assert ref.regions.refreshed == [1, 2, 3]
    assert ref.regions.mean_area() < 1.0  # the heat maps did move the boxes (threshold 0.5)
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=True)
    assert torch.equal(a["ccrop"]["boxes"], ref.regions.boxes)
    for stop in (6, 8):  # inside epoch 2 (after the first refresh), and at the end of epoch 2 (after the second)
        out = tmp_path / f"stop{stop}"
        first = Trainer(_train_cfg(out, f"train.max_steps={stop}"))
        first.fit()
        mid = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
        assert mid["global_step"] == stop and mid["ccrop"]["refreshed"] == list(range(1, stop // 4 + 1))
        assert not torch.equal(mid["ccrop"]["boxes"], RegionStore(256, warmup_epochs=1, every=1,
                                                                  threshold=0.5).boxes)
        again = Trainer(_train_cfg(out))
        again.fit()
        b = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
        assert torch.equal(b["ccrop"]["boxes"], a["ccrop"]["boxes"]) and b["ccrop"]["refreshed"] == [1, 2, 3]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_main_job_policy_kinds() -> None:
    from jointaug.train.main_job import parse_policies

    assert parse_policies("random,ccrop,ccropj(0)") == [
        ("RandomCrop", "random-crop", ["aug.crop=random"]),
        ("ContrastiveCrop", "ccrop", ["aug.ccrop=true", "aug.crop=random"]),
        ("ContrastiveCrop+J-Crop(0)", "ccropj", ["aug.ccrop=true", "aug.crop=joint", "aug.beta=0.0"]),
    ]
    with pytest.raises(ValueError, match="takes no beta"):
        parse_policies("ccrop(1)")


def test_persistent_workers_see_refreshed_boxes() -> None:
    # aug.where=workers: the store's boxes live in shared memory, so a refresh reaches running workers
    n = 16
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
    store = RegionStore(n, warmup_epochs=0, every=1, threshold=0.1)
    bv = BatchViews(make_policy("small", size=16, centre="region_beta"))
    common = dict(global_batch=8, rank=0, world=1, seed=3, device=torch.device("cpu"), regions=store)
    live = WorkerViews(_Images(images), bv, num_workers=1, **common)
    local = WorkerViews(_Images(images), bv, num_workers=0, **common)
    before = [torch.cat(v) for v in live.epoch(0)]  # starts the persistent worker
    store.update(torch.tensor([[0.0, 0.0, 0.05, 0.05]]).repeat(n, 1), 1)  # every box in the top-left corner
    after = [torch.cat(v) for v in live.epoch(0)]
    expected = [torch.cat(v) for v in local.epoch(0)]
    assert all(torch.equal(a, e) for a, e in zip(after, expected))
    assert not all(torch.equal(a, b) for a, b in zip(after, before))
    live.close()
