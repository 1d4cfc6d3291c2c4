"""Selection metrics on val: cosine to fp32 per image, and val queries against the train gallery."""

import numpy as np
import pytest
import torch

from conftest import synthetic_prepared
from reidquant.errors import ReidQuantError
from reidquant.selection import embed_batches, selection_set


def test_embeddings_are_flip_summed_and_normalised():
    batch = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    features = embed_batches(lambda x: x[:, :, 0, :].flatten(1), [batch])
    expected = torch.nn.functional.normalize(batch[:, :, 0, :].flatten(1) + batch.flip(3)[:, :, 0, :].flatten(1))
    assert np.allclose(features, expected.numpy()) and features.dtype == np.float32


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return synthetic_prepared(tmp_path_factory.mktemp("selection"), train_ids=6, test_ids=2, images_per_camera=2,
                              cameras_per_id=2, distractors=1, junk=1, multi_query_per_query=0)


def pooled(x):
    return x.mean(dim=(2, 3))


def test_fp32_against_itself_and_a_worse_model(prepared):
    chosen = selection_set("cos_mean", prepared, 16, 8, pooled)
    assert chosen.reference_value == pytest.approx(1.0) and chosen.gallery == []
    value, per_image = chosen.value(embed_batches(lambda x: pooled(x) + 0.5, chosen.val))
    assert value < 1.0 and len(per_image) == chosen.num_val and np.mean(per_image) == pytest.approx(value)
    some, per_some = chosen.value(chosen.reference[[0, 2]], [0, 2])
    assert some == pytest.approx(1.0) and len(per_some) == 2
    by_map = selection_set("mAP", prepared, 16, 8, pooled)
    assert by_map.gallery and 0 < by_map.reference_value <= 100
    assert by_map.value(by_map.reference)[0] == pytest.approx(by_map.reference_value)


def test_an_unknown_metric_is_one_line(prepared):
    with pytest.raises(ReidQuantError, match="metric 'top1' is not one of cos_mean, mAP"):
        selection_set("top1", prepared, 16, 8, pooled)
