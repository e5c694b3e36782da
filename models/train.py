"""Surrogate-gradient training through time on the digits split (and plain training of the ANN).

Spiking networks train in multi-step mode (time folded into the batch, BatchNorm statistics over
time and batch) with backpropagation through time; the spike's gradient is the neuron's surrogate
(arctan for IF neurons, rectangular for MS neurons, see :mod:`models.layers`). The loss is the
cross-entropy of the time-averaged logits (the readout divided by ``T``), so training optimises the
readout rule used at test time. Everything is seeded and uses deterministic algorithms; with the
same torch build and thread count the result is bit-for-bit reproducible. ``python -m
models.train_one NAME`` trains one zoo entry from the command line.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from models import data
from models.layers import fold_bn, seed_everything
from models.network import SpikingNetwork, accuracy, predict

THREADS = 2


def _shift(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero fill), one offset per image."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(h)[None, :]  # (b, h)
    cols = offsets[:, 1, None] + torch.arange(w)[None, :]  # (b, w)
    index = torch.arange(b)[:, None, None]
    return padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train(model: nn.Module, *, epochs: int, lr: float, batch_size: int = 64, weight_decay: float = 0.0,
          max_shift: int = 0, seed: int = 0, log=print) -> dict:
    """Train ``model`` on the training split (AdamW, cosine learning rate); returns a history dict.

    Spiking networks are trained in multi-step mode and left in single-step eval mode afterwards.
    """
    torch.set_num_threads(THREADS)
    generator = seed_everything(seed)
    x_train, y_train = data.train_set()
    x_all = torch.as_tensor(np.array(x_train))
    y_all = torch.as_tensor(np.array(y_train))
    spiking = isinstance(model, SpikingNetwork)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batches = (len(x_all) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * batches)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": [], "train_accuracy": []}
    start = time.perf_counter()
    for epoch in range(epochs):
        if spiking:
            model.multi_step()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        total_loss, correct = 0.0, 0
        for i in range(batches):
            index = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = _shift(x_all[index], generator, max_shift), y_all[index]
            out = model(xb)
            if spiking:
                out = out / model.steps
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss) * len(index)
            correct += int((out.argmax(1) == yb).sum())
        history["loss"].append(total_loss / len(x_all))
        history["train_accuracy"].append(correct / len(x_all))
        if log and (epoch + 1) % max(1, epochs // 10) == 0:
            log(f"  epoch {epoch + 1:3d}/{epochs}  loss {history['loss'][-1]:.4f}  train acc {history['train_accuracy'][-1]:.4f}"
                f"  ({time.perf_counter() - start:.0f} s)")
    history["seconds"] = time.perf_counter() - start
    if spiking:
        model.single_step()
    model.eval()
    return history


def evaluate(model: nn.Module) -> dict:
    """Test accuracy of ``model`` and of its BN-folded copy (the one that is exported)."""
    x_test, y_test = data.test_set()
    folded = fold_bn(model)
    return {
        "accuracy": accuracy(predict(model, x_test), y_test),
        "folded_accuracy": accuracy(predict(folded, x_test), y_test),
        "folded": folded,
    }
