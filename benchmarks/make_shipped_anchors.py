"""Write the shipped anchors of presets, ``assets/anchors/<preset>-<encoder>.pt``, and their manifest.

    python benchmarks/make_shipped_anchors.py                       # digits and shapes, their preset encoder
    python benchmarks/make_shipped_anchors.py --preset digits

Each preset's shipped descriptions are encoded here with the preset's encoder (only encoders whose
weights a pinned package fixes can be shipped: see ``ENCODER_PACKAGES``), saved as a plain tensor
and entered in ``assets/anchors/manifest.json`` with the file's SHA-256, the encoder spec, the
descriptions' hash and the encoder package's version, replacing the entry of the same name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "anchors"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=["digits", "shapes"], help="the presets whose anchors to ship")
    parser.add_argument("--assets", type=Path, default=ASSETS, help=f"folder of the manifest (default {ASSETS})")
    return parser.parse_args()


def main() -> None:
    import torch

    from stakes_core import load_preset
    from stakes_core.anchors import load_descriptions
    from stakes_core.anchors.build import encode_descriptions
    from stakes_core.anchors.descriptions import descriptions_hash
    from stakes_core.anchors.shipped import encoder_package_version
    from stakes_core.infra.cache import file_sha256

    args = parse_args()
    args.assets.mkdir(parents=True, exist_ok=True)
    manifest_path = args.assets / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"format": 1, "anchors": []}
    for preset_name in args.preset:
        preset = load_preset(preset_name)
        encoder = preset["anchors"]["encoder"]
        package = encoder_package_version(encoder)
        if package is None or package[1] is None:
            sys.exit(f"{preset_name}: the encoder {encoder!r} has no pinned, installed package: its anchors can't ship")
        descriptions = load_descriptions(preset["anchors"]["descriptions"])
        anchors = encode_descriptions(descriptions, encoder)
        name = f"{preset_name}-{encoder}"
        path = args.assets / f"{name}.pt"
        torch.save(anchors.contiguous(), path)
        entry = {"name": name, "file": path.name, "sha256": file_sha256(path), "encoder": encoder,
                 "descriptions": descriptions_hash(descriptions), "package": package[0],
                 "package_version": package[1], "shape": list(anchors.shape),
                 "made": {"command": "python benchmarks/make_shipped_anchors.py --preset " + " ".join(args.preset),
                          "torch": torch.__version__}}
        manifest["anchors"] = [e for e in manifest["anchors"] if e["name"] != name] + [entry]
        print(f"{name}: {tuple(anchors.shape)} → {path} ({path.stat().st_size:,} bytes)")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
