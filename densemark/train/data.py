"""Training samples from a landmark dataset: augmentation, tensors and a seeded DataLoader.

The base dataset is :class:`densemark.datasets.torch_data.ShardDataset` (or anything with the
same item format: ``ds[i] -> dict(image=(res, res, 3) uint8 RGB, landmarks=(K, 3) float32 in
crop pixels, ...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from densemark.core.seeding import rng_for
from densemark.train.augment import AugmentDraw, apply_augment, draw_augment
from densemark.train.params import AugmentParams


class LandmarkSamples(Dataset):
    """Model-ready samples: ``{"image": (3, S, S) uint8, "target": (3 K,) float32, "index": int}``.

    ``target`` is the labels in input pixels divided by the input side ``S`` (the model's
    output units). With ``augment`` each sample's draw comes from
    ``rng_for(seed, epoch, index)`` (set the epoch with :meth:`set_epoch` before iterating);
    without, the crop is only resized.
    """

    def __init__(self, base: Sequence[dict[str, Any]], input_size: int, augment: AugmentParams | None = None, seed: int = 0):
        self.base = base
        self.size = int(input_size)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.epoch = 0

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
        img, pts = apply_augment(np.asarray(item["image"]), np.asarray(item["landmarks"], np.float32), self.draw(index), self.size)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "target": torch.from_numpy(pts.reshape(-1) / np.float32(self.size)),
            "index": int(index),
        }


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch (a function of seed and epoch only, so resumable)."""
    return torch.Generator().manual_seed(int(rng_for(seed, "shuffle", epoch).integers(2**62)))


def make_loader(
    samples: LandmarkSamples, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, workers: int = 0, drop_last: bool = False
) -> DataLoader:
    """A DataLoader over ``samples`` for one epoch, shuffled by :func:`loader_generator`."""
    samples.set_epoch(epoch)
    return DataLoader(
        samples,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=loader_generator(seed, epoch) if shuffle else None,
        num_workers=workers,
        drop_last=drop_last and len(samples) > batch_size,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def to_input(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 in [0, 1] on ``device``."""
    return images.to(device, non_blocking=True).float().div_(255.0)
