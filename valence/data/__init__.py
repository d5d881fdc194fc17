"""download → unzip → audit → split: an archive in; a labels table, its audit and grouped folds out.

Nothing here imports TensorFlow.
"""
