"""Train one zoo entry and print its accuracy; nothing is written unless ``--out``.

Command line (from the repository root)::

    python -m models.train_one sew_add [--epochs N] [--out state.pt]
"""

from __future__ import annotations

import argparse

import torch

from models import zoo
from models.layers import count_parameters
from models.train import evaluate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train_one", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(zoo.SPECS))
    parser.add_argument("--epochs", type=int, help="override the zoo's number of epochs")
    parser.add_argument("--out", help="save the trained state dict here")
    args = parser.parse_args(argv)
    spec = zoo.SPECS[args.name]
    if args.epochs:
        spec = {**spec, "train": {**spec["train"], "epochs": args.epochs}}
    model, history = zoo.train_spec(spec)
    result = evaluate(model)
    print(f"{args.name}: {count_parameters(result['folded']):,} parameters after BN folding, trained in {history['seconds']:.1f} s; "
          f"test accuracy {result['accuracy']:.4f}, BN folded {result['folded_accuracy']:.4f}")
    if args.out:
        torch.save(model.state_dict(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
