"""Stage 9: the most confident out-of-fold mistakes, each beside the released model's occlusion map.

    python -m stages.mistakes

Reads plots/eval/predictions.csv (evaluate: every labelled image's out-of-fold P(Positive)), data/labels.csv
(the rated valence, where there is one) and models/model.keras. Writes plots/eval/mistakes.png: up to 8 false
positives and 8 false negatives, most confident first, each photo beside its map (valence.use.explain: which
regions push P(Positive) up, red, or down, blue), scored as predict scores (evaluate.flip_average). The
probabilities are the fold models'; the maps are the released model's (the fold models are not kept), which
learnt from these photos too, so a map shows what the shipped model looks at, not why a fold model erred.
"""

from valence import config, params
from valence.errors import PipelineError, run_stage
from valence.files import read_csv

PREDICTIONS, MODEL, OUT = config.EVAL_PREDICTIONS, config.MODEL, config.MISTAKES


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
    from valence.use import explain  # TensorFlow loads only after the inputs are checked
    from valence.use.classifier import open_classifier
    from valence.use.predict import load_photo, score_images

    chosen = [r for kind in figures.worst_mistakes(rows).values() for r in kind]
    classifier = open_classifier(MODEL)
    maps = {}
    for r in chosen:
        pixels, reason = load_photo(r["path"], classifier.height, classifier.width)
        if pixels is None:
            raise PipelineError(f"{r['path']}: {reason}")
        _, heat = explain.explain(lambda batch: score_images(classifier, batch, p.flip_average), pixels)
        maps[r["path"]] = explain.side_by_side(pixels, heat)
    figures.mistakes(rows, OUT, pictures=maps)
    print(f"wrote {OUT}: {len(chosen)} mistakes with the released model's maps ({explain.METHOD})")


if __name__ == "__main__":
    run_stage(main)
