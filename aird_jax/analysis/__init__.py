"""The paper's visual analyses (Section VI, Figures 2-3), computed from a trained run.

``faces.py`` loads test faces (the evaluation data path) and the model's outputs; one module per
figure: ``dct_figure.py`` (Fig. 2, DCT filtering), ``tsne.py`` (Fig. 3, embeddings and their
cluster separation), ``gradcam.py`` (RGB stream) and ``saliency.py`` (DCT-coefficient
saliency), both from one backward pass (``gradients.py``). ``aird_jax/analyze.py`` is the
CLI. Every figure is a PNG next to a JSON of the numbers behind it (``figio.py``).
"""

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before any submodule imports pyplot
