"""The study's report figures: tables built from the run records (:mod:`.frames`, tested without
drawing), drawn with matplotlib (:mod:`.draw`), named in words (:mod:`.labels`).

1. :func:`plot_headline`: every task and perplexity as a fraction of dense against sparsity and bits,
   the "within 5% of dense" band shaded: does perplexity stay in it where closed-book knowledge leaves it?
2. :func:`plot_vs_compression`: each metric in its own units, with chance and the open-book copy baseline.
3. :func:`plot_nm_vs_unstructured`: 2:4 / 4:8 beside unstructured pruning at the same sparsity.
4. :func:`plot_matching_heatmap`: the matching table, task x compression, coloured by verdict.

:func:`save_figure` writes each as PNG + SVG beside the report's HTML.
"""

from kick_core.figures.draw import (CAPTIONS, plot_headline, plot_matching_heatmap, plot_nm_vs_unstructured,
                                    plot_vs_compression, save_figure)
from kick_core.figures.frames import (copy_baseline, copy_baselines, curves, heatmap_frame, labelled, nm_frame,
                                      paired_perplexity, perplexity_matching, relative_frame)
from kick_core.figures.labels import compression_label, match_band, panel_title

__all__ = ["CAPTIONS", "compression_label", "copy_baseline", "copy_baselines", "curves", "heatmap_frame", "labelled",
           "match_band", "nm_frame", "paired_perplexity", "panel_title", "perplexity_matching", "plot_headline",
           "plot_matching_heatmap",
           "plot_nm_vs_unstructured", "plot_vs_compression", "relative_frame", "save_figure"]
