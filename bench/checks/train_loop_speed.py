"""``python -m bench.checks.train_loop_speed``: the training loop's speed against a bare PyTorch loop.

Both train the same network on the same in-memory tensors with the tutorial's settings (Adam,
batch 50, fp32), alternating ours, bare, ours, bare in one process so warm-up and machine drift
hit both alike; the second pair is the one to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F

from models.data import load_mnist, to_input
from models.errors import parse_int
from models.network import DeepMNIST
from models.train import RECIPES, train


def bare_loop(x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> float:
    """Steps/s of the plainest loop: slice a permutation, forward, backward, Adam step."""
    torch.manual_seed(0)
    model = DeepMNIST()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    perm = torch.randperm(len(x))
    start = time.perf_counter()
    for step in range(steps):
        idx = perm[(step * batch) % len(x) :][:batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=parse_int, default=400)
    parser.add_argument("--out", default="/tmp/deepmnist-loop-speed.safetensors", help="scratch checkpoint")
    args = parser.parse_args()
    mnist = load_mnist()
    x, y = to_input(mnist.train_images), torch.as_tensor(mnist.train_labels).long()
    config = dataclasses.replace(RECIPES["tutorial"], steps=args.steps, checkpoint_every=0, log_every=0)
    for attempt in (1, 2):
        ours = train(config, mnist, args.out, progress=False).steps_per_second
        bare = bare_loop(x, y, args.steps, config.batch_size)
        print(f"pass {attempt}: deepmnist loop {ours:.1f} steps/s, bare loop {bare:.1f} steps/s")


if __name__ == "__main__":
    main()
