"""Plot fairseq json training logs: memory savings and perplexity over updates, as PNG.

    python scripts/plot_logs.py LOG [LABEL=LOG ...] --out-dir DIR [--prefix NAME] [--width W --height H --dpi D]

The logic lives in ``fairseq_revrnn.recipes.plots`` (``--help`` for details).
"""

from fairseq_revrnn.recipes.plots import main

if __name__ == "__main__":
    main()
