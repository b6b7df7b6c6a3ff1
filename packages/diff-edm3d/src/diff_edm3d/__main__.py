"""``python -m diff_edm3d`` runs the CLI (also the torchrun entry point)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
