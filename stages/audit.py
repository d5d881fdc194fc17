"""Stage 3: audit the labelled images — duplicates, near-duplicates, label conflicts, quality flags.

    python -m stages.audit

Reads data/labels.csv and the images it lists; writes data/audit.json (the counts, and at most 200 of each
kind of finding, with paths), data/near_duplicates.csv (every image of a near-duplicate cluster: path, label,
representative, distance), metrics/audit.json (counts) and plots/audit/near_duplicates.png (near-duplicates
beside their representatives, label conflicts first). The split stage keeps each cluster in one group; nothing
is dropped here. Memory stays bounded and no step compares every pair in Python: 100,000 photos are fine.
"""
from valence import config, params
from valence.data import audit
from valence.data.folds import MANIFEST_COLUMNS
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json


def main():
    p = params.load("audit")
    rows = read_csv(config.LABELS, required=MANIFEST_COLUMNS)
    findings, cluster_rows = audit.audit(rows, p.near_duplicate_bits, p.dark_below, p.blurry_below, p.min_side,
                                         p.max_aspect)
    write_json(config.AUDIT, findings)
    write_csv(config.NEAR_DUPLICATES, cluster_rows, audit.CLUSTER_COLUMNS)
    counts = audit.counts(findings)
    write_json(config.AUDIT_METRICS, counts)
    from valence.report import figures  # matplotlib loads only after the findings are safe on disk

    conflicts = {tuple(n["paths"]) for n in findings["label_conflicts"]}
    pairs = findings["label_conflicts"] + [n for n in findings["near_duplicates"] if tuple(n["paths"]) not in conflicts]
    figures.image_pairs(pairs, f"near-duplicates at ≤ {p.near_duplicate_bits} pHash bits from their representative "
                               "(label conflicts first)", config.NEAR_DUPLICATES_PLOT,
                        total=counts["near_duplicate_pairs"])
    for n in findings["near_duplicates"][:10]:
        print(f"near-duplicate ({n['distance']} bits): {n['paths'][0]} ({n['labels'][0]}) ~ {n['paths'][1]} ({n['labels'][1]})")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_stage(main)
