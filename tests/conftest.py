import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def market_like(rng, n_ids=30, n_query=60, n_gallery=400, dim=32, noise=0.6):
    """Random Market-shaped features: identities with a centre, cameras 1-6, distractors and junk."""
    centres = rng.normal(size=(n_ids + 1, dim))
    q_label = rng.integers(1, n_ids + 1, n_query)
    q_cam = rng.integers(1, 7, n_query)
    g_label = np.concatenate([rng.integers(1, n_ids + 1, n_gallery - 40), np.zeros(25, int), -np.ones(15, int)])
    g_cam = rng.integers(1, 7, n_gallery)
    # one query whose only matches share its camera, one whose identity is absent
    q_label[0], q_cam[0] = n_ids + 5, 1
    g_label[:3], g_cam[:3] = n_ids + 5, 1
    q_label[1] = n_ids + 9

    def feats(labels):
        base = np.where(labels[:, None] > 0, centres[np.clip(labels, 0, n_ids)], 0.0)
        f = base + noise * rng.normal(size=(len(labels), dim))
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    return feats(q_label), q_label, q_cam, feats(g_label), g_label, g_cam


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "reidquant", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)
