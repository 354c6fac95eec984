"""Training samples from a landmark dataset: augmentation, tensors and a seeded DataLoader.

The base dataset is :class:`densemark.datasets.torch_data.ShardDataset` (or anything with the
same item format: ``ds[i] -> dict(image=(res, res, 3) uint8 RGB, landmarks=(K, 3) float32 in
crop pixels, ...)``).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from densemark.core.seeding import rng_for
from densemark.train.augment import AugmentDraw, apply_augment, colour_affine, draw_augment
from densemark.train.params import AugmentParams


def chw(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) contiguous (``cv2.split`` into the planes: ~3x faster than
    a strided numpy copy)."""
    out = np.empty((3, *image.shape[:2]), image.dtype)
    cv2.split(np.ascontiguousarray(image), [out[0], out[1], out[2]])
    return out


class LandmarkSamples(Dataset):
    """Model-ready samples: ``{"image": (3, S, S) uint8, "target": (3 K,) float32, "index": int}``
    (+ ``"colour": (3, 2) float32`` with ``device_colour``).

    ``target`` is the labels in input pixels divided by the input side ``S`` (the model's
    output units). With ``augment`` each sample's draw comes from
    ``rng_for(seed, epoch, index)`` (set the epoch with :meth:`set_epoch` before iterating);
    without, the crop is only resized. ``device_colour``: the colour change is not applied to
    the uint8 image but returned as its per-channel affine map (:func:`colour_affine`), which
    :func:`to_input` applies to the batch on the model's device.
    """

    def __init__(
        self, base: Sequence[dict[str, Any]], input_size: int, augment: AugmentParams | None = None, seed: int = 0,
        device_colour: bool = False,
    ):  # fmt: skip
        self.base = base
        self.size = int(input_size)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.epoch = 0
        self.device_colour = bool(device_colour)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def draw(self, index: int) -> AugmentDraw:
        if self.augment is None:
            return AugmentDraw()
        return draw_augment(rng_for(self.seed, "augment", self.epoch, int(index)), self.augment)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        d = self.draw(index)
        img, pts = apply_augment(
            np.asarray(item["image"]),
            np.asarray(item["landmarks"], np.float32),
            d,
            self.size,
            not self.device_colour,
        )
        out = {
            "image": torch.from_numpy(chw(img)),
            "target": torch.from_numpy(pts.reshape(-1) / np.float32(self.size)),
            "index": int(index),
        }
        if self.device_colour:
            out["colour"] = torch.from_numpy(colour_affine(d))
        return out


class BlockShuffleSampler(Sampler[int]):
    """A seeded shuffle that keeps reads local: the blocks (the dataset's storage units, e.g.
    Parquet row groups) come in random order and the rows of each block in random order, so
    each block is read once per loader worker instead of once per row.

    Args:
        blocks: (M_b,) index arrays that partition ``range(len(dataset))``.
        generator: the epoch's shuffling generator (:func:`loader_generator`).
    """

    def __init__(self, blocks: Sequence[np.ndarray], generator: torch.Generator):
        self.blocks = [np.asarray(b, np.int64) for b in blocks]
        self.generator = generator

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def __iter__(self) -> Iterator[int]:
        for b in torch.randperm(len(self.blocks), generator=self.generator).tolist():
            rows = self.blocks[b]
            yield from rows[torch.randperm(len(rows), generator=self.generator).numpy()].tolist()


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch (a function of seed and epoch only, so resumable)."""
    return torch.Generator().manual_seed(int(rng_for(seed, "shuffle", epoch).integers(2**62)))


def _worker_init(_worker_id: int) -> None:
    """One torch thread per loader worker: the workers are the parallelism. (OpenCV's thread
    pool is left alone: reconfiguring it in a forked child can deadlock.)"""
    torch.set_num_threads(1)


def _worker_context() -> Any:
    """The loader workers' start method: ``fork`` (fast) when this process runs no other Python
    thread; ``forkserver`` otherwise (e.g. inside a Prefect flow or beside a server), since
    forking a threaded process can deadlock or kill its children."""
    if threading.active_count() == 1:
        return None
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "densemark.train.data", "densemark.datasets.torch_data"])
    return ctx


def make_loader(
    samples: LandmarkSamples,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``samples`` for one epoch, shuffled by :func:`loader_generator`.

    When the base dataset tells its storage blocks (``ShardDataset.blocks()``), the shuffle is
    a :class:`BlockShuffleSampler`: blocks in random order, rows within a block in random order.
    """
    samples.set_epoch(epoch)
    sampler = None
    if shuffle and callable(getattr(samples.base, "blocks", None)):
        sampler = BlockShuffleSampler(samples.base.blocks(), loader_generator(seed, epoch))
    return DataLoader(
        samples,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=loader_generator(seed, epoch) if shuffle and sampler is None else None,
        num_workers=workers,
        drop_last=drop_last and len(samples) > batch_size,
        persistent_workers=False,
        worker_init_fn=_worker_init if workers > 0 else None,
        multiprocessing_context=_worker_context() if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )


def to_input(
    images: torch.Tensor, device: torch.device | str = "cpu", colour: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 in [0, 1] on ``device``; ``colour`` (N, 3, 2) per-sample
    per-channel ``[scale, offset]`` (``LandmarkSamples(device_colour=True)``): ``clip(scale x + offset, 0, 1)``."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if colour is not None:
        c = colour.to(device, non_blocking=True).float()
        x.mul_(c[:, :, 0, None, None]).add_(c[:, :, 1, None, None]).clamp_(0.0, 1.0)
    return x
