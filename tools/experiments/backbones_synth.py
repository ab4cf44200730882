"""Accuracy next to cost: a short LOSO run per backbone on the synthetic benchmark.

    python tools/experiments/backbones_synth.py STORE OUT_DIR [--epochs 3] [--json OUT.json]

STORE is the demo's feature store (``make demo``: ``demo_out/features.zarr``, fast TV-L1 preset);
every backbone of spotnet.models is trained with the SPEC 6 recipe (SGD, lr 5e-4, batch 12, seed
0) for ``--epochs`` epochs per fold, macro and micro, and evaluated with MEGC F1. Prints one row
per backbone: parameters, training seconds and F1 per type.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from spotnet.models import get_spec, list_models
from spotnet.training import train_loso


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--backbones", nargs="*", default=None)
    args = parser.parse_args(argv)
    rows = []
    for name in args.backbones or ["softnet", *[m for m in list_models() if m != "softnet"]]:
        start = time.perf_counter()
        result = train_loso(args.store, out_dir=args.out_dir / name, backbone=name, epochs=args.epochs, seed=0,
                            progress=False, report=False)
        seconds = time.perf_counter() - start
        row = {"backbone": name, "params": get_spec(name).n_params, "epochs": args.epochs, "seed": 0,
               "train_seconds": round(seconds, 1), **{kind: getattr(result, kind).f1
                                                       for kind in ("macro", "micro", "overall")}}
        rows.append(row)
        print(f"{name:13} {row['params']:>11,} params  {seconds:7.1f} s  F1 macro {row['macro']:.4f}  "
              f"micro {row['micro']:.4f}  overall {row['overall']:.4f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"store": str(args.store), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
