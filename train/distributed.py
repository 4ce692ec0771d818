"""Data-parallel training under torchrun: DistributedDataParallel, gloo on the CPU, nccl on CUDA.

    torchrun --standalone --nproc_per_node=2 -m edgevae.train --data-dir DIR --out OUT

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them a run is one process (world size 1)
and nothing here changes it. Every rank draws the same shuffle, binarization and noise for each
global batch from the (seed, epoch) generator and trains on its contiguous shard of it, so N
processes compute the gradient of the same global batch as one process does; only the order of
the gradient sums differs. Rank 0 alone writes checkpoints, metrics and pictures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .model import Decoder, Encoder, compute_loss_terms, iwae_terms


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def detect_world() -> World:
    """The process's place in a torchrun job (from its environment), or a world of one."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be ints (torchrun sets them): {exc}") from exc
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} is not within WORLD_SIZE={size}")
    return World(rank, size, local)


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (gloo for the CPU, nccl for CUDA); each rank gets its own GPU."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def sum_over_ranks(tensor: Tensor, world: World) -> Tensor:
    """The elementwise sum of `tensor` over all ranks (itself in a world of one)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard(rows: int, world: World) -> slice:
    """This rank's contiguous part of a global batch of `rows` (sizes differ by at most one)."""
    return slice(world.rank * rows // world.size, (world.rank + 1) * rows // world.size)


class LossTerms(nn.Module):
    """Encoder and decoder as one module, so one DistributedDataParallel wraps both; its parameters
    come in the order of encoder then decoder, as a single-process optimizer sees them."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: Tensor, eps: Tensor, kl_weight: float) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, rec, kl) per example: -ELBO with the KL weighted for eps (N, latent); the negative
        importance-weighted bound for eps (k, N, latent)."""
        if eps.dim() == 3:
            bound, rec, kl = iwae_terms(self.encoder, self.decoder, x, eps, kl_weight)
            return -bound, rec, kl
        rec, kl = compute_loss_terms(self.encoder, self.decoder, x, eps)
        return rec + kl_weight * kl, rec, kl


def wrap(module: nn.Module, world: World, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` when there are several ranks, else the module itself."""
    if not world.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
