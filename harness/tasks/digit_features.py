"""A small digits classifier, trained once by the harness, whose features score generated digits.

This is the harness's stand-in for the Inception network of FID and the Inception Score: a convnet
trained on the training split of scikit-learn's digits (the split of ``harness.tasks.digits``), at the
task's image size, with pixel values in [-1, 1]. Its 64 penultimate features give the Frechet distance
("FID-digits") and its class probabilities the Inception Score ("IS-digits"). Neither number is
comparable with ImageNet FID/IS or with any published value; they compare models within the harness,
for the same recipe.

Training is deterministic: a fixed seed, one thread, full-batch order from a seeded generator, Adam
for :data:`RECIPE` ``steps``. The weights are cached on disk under ``$XDG_CACHE_HOME/harness`` (or
``.cache/harness`` in the repository root, ignored by git), named by a hash of the recipe (including
the image size, the split and the torch version), and retrained when the file is missing; the global
RNG and thread count are left as they were.

Formulas. Frechet distance between Gaussians fitted to two feature sets:
``|mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))``, the trace of the square root from
eigenvalues (see :func:`frechet_distance`; checked against ``scipy.linalg.sqrtm`` in the tests).
Inception Score with one split: ``exp(E_x[sum_y p(y|x) log p(y|x)] - sum_y p(y) log p(y))``, p(y) the mean of
p(y|x) over the generated images (= exp of the mean KL(p(y|x) || p(y))).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_FEATURES = 64


class Recipe(TypedDict):
    """The classifier's training recipe (hashed into the cache key, so its keys are fixed)."""

    version: int
    arch: str
    steps: int
    batch_size: int
    lr: float
    seed: int
    n_features: int


RECIPE: Recipe = {"version": 1, "arch": "conv16-conv32s2-fc64-fc10", "steps": 600, "batch_size": 64,
                  "lr": 2e-3, "seed": 0, "n_features": N_FEATURES}


class DigitClassifier(nn.Module):
    def __init__(self, image_size: int, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * ((image_size + 1) // 2) ** 2, N_FEATURES)
        self.head = nn.Linear(N_FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "harness"
    return Path(__file__).resolve().parents[2] / ".cache" / "harness"


def recipe_key(image_size: int, test_fraction: float, split_seed: int) -> str:
    recipe = {**RECIPE, "image_size": image_size, "test_fraction": test_fraction, "split_seed": split_seed,
              "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def train_classifier(images: torch.Tensor, labels: torch.Tensor) -> DigitClassifier:
    """The recipe's training on (N, 1, S, S) images in [-1, 1]; deterministic, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():  # evaluation runs under no_grad
            torch.manual_seed(RECIPE["seed"])
            model = DigitClassifier(images.shape[-1])
            gen = torch.Generator().manual_seed(RECIPE["seed"])
            opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
            for _ in range(RECIPE["steps"]):
                idx = torch.randint(0, len(labels), (RECIPE["batch_size"],), generator=gen)
                loss = F.cross_entropy(model(images[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def load_classifier(key: str, images: torch.Tensor, labels: torch.Tensor) -> DigitClassifier:
    """The cached classifier named ``key`` (see :func:`recipe_key`), trained on first use."""
    path = cache_dir() / f"digits-classifier-{key}.pt"
    if path.exists():
        model = DigitClassifier(images.shape[-1])
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        model = train_classifier(images, labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: parallel workers never read half a file
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Eigen-based: tr((S_1 S_2)^(1/2)) = sum of sqrt(eigenvalues of S_1^(1/2) S_2 S_1^(1/2)), a symmetric
    PSD matrix (so singular covariances, e.g. from features that are always 0, need no offset)."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ cov2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)


def gaussian(total: torch.Tensor, outer: torch.Tensor, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance from a sum of vectors, a sum of their outer products, a count."""
    mu = (total / n).double()
    cov = (outer.double() - n * torch.outer(mu, mu)) / max(n - 1, 1)
    return mu.numpy(), cov.numpy()


def inception_score(prob_sum: torch.Tensor, plogp_sum: torch.Tensor, n: float) -> float:
    marginal = (prob_sum / n).double()
    entropy_marginal = -(marginal * torch.log(marginal.clamp_min(1e-30))).sum()
    return float(torch.exp(plogp_sum.double() / n + entropy_marginal))
