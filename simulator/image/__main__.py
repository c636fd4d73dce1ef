"""``python -m simulator.image [--force] [--tag TAG]``: build the simulator image (``make sim-image``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simulator.image.build import TAG, build_image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.image", description=__doc__)
    parser.add_argument("--tag", default=TAG, help=f"image tag (default {TAG})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    args = parser.parse_args(argv)
    outcome = build_image(args.tag, force=args.force)
    what = "built" if outcome.built else "up to date:"
    print(
        f"{what} {outcome.tag} ({outcome.size_bytes / 1e6:.1f} MB, inputs {outcome.inputs[:12]}) "
        f"in {outcome.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
