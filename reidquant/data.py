"""Images in, tensors out: the reference project's transforms and a file-list dataset."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from reidquant.errors import ReidQuantError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def test_transform(height: int, width: int):
    return transforms.Compose([
        transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def train_transform(height: int, width: int, erasing: float = 0.0):
    steps = [
        transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.Pad(10),
        transforms.RandomCrop((height, width)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ]
    if erasing > 0:
        steps.append(transforms.RandomErasing(p=erasing, value="random"))
    return transforms.Compose(steps)


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # forces the full decode, so truncation shows here
    except FileNotFoundError:
        raise ReidQuantError(f"{path}: image not found") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ReidQuantError(f"{path}: corrupt or truncated image ({error})") from None


class ImageList(Dataset):
    """Images from a list of paths, each with an integer target."""

    def __init__(self, paths, targets=None, transform=None):
        self.paths = [Path(p) for p in paths]
        self.targets = list(targets) if targets is not None else [0] * len(self.paths)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = open_image(self.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def loader(paths, height: int, width: int, batch_size: int, workers: int) -> DataLoader:
    """Test-time loader in the given order (no shuffling: rows must follow the file order)."""
    return DataLoader(ImageList(paths, transform=test_transform(height, width)), batch_size=batch_size,
                      shuffle=False, num_workers=workers, persistent_workers=False)


def load_batch(paths, height: int, width: int) -> torch.Tensor:
    transform = test_transform(height, width)
    return torch.stack([transform(open_image(p)) for p in paths])
