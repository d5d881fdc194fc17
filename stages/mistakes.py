"""Stage 9: the most confident out-of-fold mistakes, each beside the released model's map of why.

    python -m stages.mistakes

Reads plots/eval/predictions.csv (evaluate: every labelled image's out-of-fold P(Positive)), data/labels.csv
(the rated valence, where there is one) and models/model.tflite (the release as export checked it: its maps
are the Keras file's within 1e-5, and it loads in a second without TensorFlow). Writes plots/eval/mistakes.png: up to 8 false
positives and 8 false negatives, most confident first, each photo beside its map (valence.use.explain: the frozen
model's class activation map, from the pass that scores the photos; an occlusion map for other models), scored as
predict scores (evaluate.flip_average). The
probabilities are the fold models'; the maps are the released model's (the fold models are not kept), which
learnt from these photos too, so a map shows what the shipped model looks at, not why a fold model erred.
"""
import numpy as np

from valence import config, params
from valence.errors import PipelineError, run_stage
from valence.files import read_csv

PREDICTIONS, MODEL, OUT = config.EVAL_PREDICTIONS, config.LITERT, config.MISTAKES  # LiteRT: no TensorFlow to load


def main():
    p = params.load("evaluate")
    rows = read_csv(PREDICTIONS, required=["path", "actual", "predicted", config.PROBABILITY])
    labels = config.LABELS
    valence = {r["path"]: r.get("valence") for r in read_csv(labels, required=["path"])} if labels.exists() else {}
    try:
        rows = [{**r, config.PROBABILITY: float(r[config.PROBABILITY]), "valence": valence.get(r["path"])} for r in rows]
    except ValueError:
        raise PipelineError(f"{PREDICTIONS}: a probability is not a number; run evaluate again") from None
    from valence.report import figures
    from valence.use import explain
    from valence.use.classifier import open_classifier
    from valence.use.predict import load_photo

    chosen = [r for kind in figures.worst_mistakes(rows).values() for r in kind]
    classifier = open_classifier(MODEL)
    photos = []
    for r in chosen:
        pixels, reason = load_photo(r["path"], classifier.height, classifier.width)
        if pixels is None:
            raise PipelineError(f"{r['path']}: {reason}")
        photos.append(pixels)
    how = explain.method(classifier)
    _, heats = explain.explain_batch(classifier, np.stack(photos), p.flip_average) if photos else ({}, [])
    maps = {r["path"]: explain.side_by_side(pixels, explain.drawn(heat, how))
            for r, pixels, heat in zip(chosen, photos, heats)}
    figures.mistakes(rows, OUT, pictures=maps, legend=explain.LEGEND[how])
    print(f"wrote {OUT}: {len(chosen)} mistakes with the released model's maps ({how})")


if __name__ == "__main__":
    run_stage(main)
