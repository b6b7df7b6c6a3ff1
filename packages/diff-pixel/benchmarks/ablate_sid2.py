"""SiD2's design claims measured in miniature (arXiv 2410.19324): the ablation of the README's
"SiD2 ablation" section. The driver is :mod:`diff_pixel.sid.ablation`; see its docstring.

Usage: ``python benchmarks/ablate_sid2.py --jobs 2 --out ablation`` (``--help`` for the options).
"""

from diff_pixel.sid.ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
