"""Positive vs. negative image valence: the library behind the DVC stages in stages/, grouped as the pipeline runs.

- valence.data: download → unzip → audit → split — archives in, a checked labels table and grouped folds out
- valence.learn: features → fold → train → export — Keras models, frozen features, heads and their training
- valence.report: evaluate, mistakes, plots_page — scores, figures and the offline plots page
- valence.use: predict, explain, serve — a trained model (Keras or LiteRT) on new photos
- shared by all: params (params.yaml's schema), registry (model facts), files (atomic writes), runtime
  (cores, seeds, devices), errors (one-line errors)
"""
__version__ = "0.2.0"  # the one place the version is set: pyproject reads it; CHANGELOG.md says what changed

from valence.runtime import quiet_tensorflow_import

quiet_tensorflow_import()  # TensorFlow's C++ start-up notes, once per process: docs/guide.md, Troubleshooting
