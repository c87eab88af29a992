"""Two gloo ranks x B/2 images give the same SimCLR gradients as one process on the global batch B.

Covers jointaug.distributed.gather_with_grad (negatives from both ranks, gradient summed back),
the loss scaling under DDP's gradient averaging, and AllReduceBatchNorm (synchronised BN) on CPU (backbone and head).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from jointaug import distributed as jdist
from jointaug.methods import build_method
from jointaug.methods.losses import nt_xent
from jointaug.models import build_backbone

GLOBAL_BATCH = 8
WORLD = 2


def _make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = build_backbone("convnet4", width=4)
    return build_method("simclr", backbone, proj_hidden_dim=16, proj_out_dim=8, temperature=0.5).double()


def _make_views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2)]


def _worker(rank: int, world: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    init = "file://" + os.path.join(out_dir, "init")  # a rendezvous file: no port to race for
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        assert jdist.is_dist() and jdist.world_size() == world and jdist.rank() == rank
        model = jdist.convert_sync_batchnorm(_make_model())
        ddp = DDP(model)
        n = GLOBAL_BATCH // world
        views = [v[rank * n:(rank + 1) * n] for v in _make_views()]
        out = ddp(views)
        out["loss"].backward()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        bn = {k: b.detach().clone() for k, b in model.named_buffers() if "running" in k}
        # a bare gather: rank order, and gradient of a sum over ranks comes back summed
        x = torch.full((2, 3), float(rank), dtype=torch.float64, requires_grad=True)
        gathered = jdist.gather_with_grad(x)
        (gathered * (torch.arange(gathered.shape[0], dtype=torch.float64)[:, None] + 1)).sum().backward()
        nograd = jdist.all_gather_nograd(torch.tensor([rank]))
        torch.save(
            {"loss": out["loss"].detach(), "grads": grads, "bn": bn, "gathered": gathered.detach(),
             "gather_grad": x.grad, "nograd": nograd},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_simclr_gradients_match_single_process(tmp_path):
    mp.start_processes(_worker, args=(WORLD, str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    ref = _make_model()
    ref.train()
    out = ref(_make_views())
    out["loss"].backward()

    # each rank's loss is over its own anchors; their mean is the global-batch loss
    mean_loss = sum(r["loss"] for r in ranks) / WORLD
    torch.testing.assert_close(mean_loss, out["loss"].detach(), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"])  # the halves really differ

    for name, p in ref.named_parameters():
        for r in ranks:  # DDP leaves identical (averaged) gradients on every rank
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=1e-8, atol=1e-10, msg=name)
    for name, buf in ref.named_buffers():
        if "running" in name:
            torch.testing.assert_close(ranks[0]["bn"][name], buf, rtol=1e-8, atol=1e-10, msg=name)

    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["gathered"][:, 0], torch.tensor([0.0, 0, 1, 1], dtype=torch.float64))
        # d/dx of sum_rank sum_i (i + 1) * gathered_i: rows r*2, r*2+1 weighted, summed over 2 ranks
        expect = torch.tensor([r * 2 + 1, r * 2 + 2], dtype=torch.float64)[:, None].expand(2, 3) * WORLD
        torch.testing.assert_close(res["gather_grad"], expect)
        assert res["nograd"].tolist() == [0, 1]


def test_without_gather_single_process_is_plain_nt_xent():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    assert not jdist.is_dist()
    assert jdist.world_size() == 1 and jdist.rank() == 0
    assert jdist.gather_with_grad(z1) is z1
    torch.testing.assert_close(nt_xent(z1, z2, 0.2, gather=True), nt_xent(z1, z2, 0.2, gather=False))


def test_convert_sync_batchnorm_keeps_state_and_single_process_matches_bn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm1d(2))
    model[1].running_mean.fill_(0.3)
    conv = jdist.convert_sync_batchnorm(model)
    assert isinstance(conv[1], jdist.AllReduceBatchNorm) and isinstance(conv[2], jdist.AllReduceBatchNorm)
    assert conv[1].weight is model[1].weight
    assert set(conv.state_dict()) == set(model.state_dict())
    torch.testing.assert_close(conv[1].running_mean, torch.full((4,), 0.3))
    x = torch.randn(5, 3, 6, 6)
    ref = torch.nn.functional.batch_norm(model[0](x), None, None, model[1].weight, model[1].bias, training=True)
    torch.testing.assert_close(conv[1](conv[0](x)), ref)
