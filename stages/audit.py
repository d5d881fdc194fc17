"""Stage 3: audit the labelled images — duplicates, near-duplicates, label conflicts, quality flags.

    python -m stages.audit

Reads data/labels.csv and the images it lists; writes data/audit.json (every finding, with paths),
metrics/audit.json (counts) and plots/audit/near_duplicates.png (the near-duplicate pairs side by side, label
conflicts first). The split stage joins each near-duplicate pair into one group; nothing is dropped here.
"""
from valence import params
from valence.data import audit
from valence.data.folds import MANIFEST_COLUMNS
from valence.errors import run_stage
from valence.files import read_csv, write_json


def main():
    p = params.load("audit")
    rows = read_csv("data/labels.csv", required=MANIFEST_COLUMNS)
    findings = audit.audit(rows, p.near_duplicate_bits, p.dark_below, p.blurry_below, p.min_side, p.max_aspect)
    write_json("data/audit.json", findings)
    counts = audit.counts(findings)
    write_json("metrics/audit.json", counts)
    from valence.report import figures  # matplotlib loads only after the findings are safe on disk

    pairs = findings["label_conflicts"] + [n for n in findings["near_duplicates"] if n not in findings["label_conflicts"]]
    figures.image_pairs(pairs, f"near-duplicates at ≤ {p.near_duplicate_bits} pHash bits (label conflicts first)",
                         "plots/audit/near_duplicates.png")
    for n in findings["near_duplicates"][:10]:
        print(f"near-duplicate ({n['distance']} bits): {n['paths'][0]} ({n['labels'][0]}) ~ {n['paths'][1]} ({n['labels'][1]})")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_stage(main)
