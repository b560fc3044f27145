"""imagefolder with image_size: mixed sizes resized to cover and centre-cropped; other datasets refuse it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from decayprune.config import ConfigError, load_config  # noqa: E402
from decayprune.data import load_dataset  # noqa: E402
from decayprune.data.imagefolder import fit_image  # noqa: E402


def test_fit_image_scales_to_cover_then_crops_the_centre() -> None:
    image = torch.zeros(1, 20, 40)
    image[:, :, 10:30] = 1.0  # a bright centre square of 20x20
    out = fit_image(image, (10, 10))  # scale 0.5 -> 10x20, crop columns 5..15 = the square
    assert out.shape == (1, 10, 10) and torch.allclose(out[:, :, 1:-1], torch.ones(1, 10, 8), atol=1e-6)
    assert float(out[:, :, [0, -1]].min()) > 0.5  # the edge columns blend in a little of the dark sides
    same = torch.rand(3, 8, 8)
    assert torch.equal(fit_image(same, (8, 8)), same)


def test_imagefolder_resizes_images_of_different_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECAYPRUNE_DATA", raising=False)
    rng = np.random.default_rng(0)
    for split, cls, size in (("train", "a", (40, 50)), ("train", "b", (24, 24)), ("test", "a", (64, 32))):
        (tmp_path / split / cls).mkdir(parents=True)
        plt.imsave(tmp_path / split / cls / "0.png", rng.random((*size, 3)))
    with pytest.raises(ValueError, match="set data.image_size"):
        load_dataset("imagefolder", tmp_path)
    splits = load_dataset("imagefolder", tmp_path, image_size=(16, 16))
    assert splits.input_shape == (3, 16, 16) and splits.num_train == 2 and splits.num_test == 1
    with pytest.raises(ValueError, match="imagefolder images only"):
        load_dataset("digits", image_size=(16, 16))


def test_config_refuses_image_size_for_fixed_size_datasets() -> None:
    with pytest.raises(ConfigError, match="imagefolder images only"):
        load_config(None, values={"data.image_size": [16, 16]})
    with pytest.raises(ConfigError, match="at least 1"):
        load_config(None, values={"data.name": "imagefolder", "data.image_size": [0, 16]})
