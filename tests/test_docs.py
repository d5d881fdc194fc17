"""The README and docs/: every picture a PNG committed to git, and every fact that can drift checked against what
it describes. The README reads in ten minutes; the numbers it quotes are the committed run's
(dvclive/evaluate/metrics.json, metrics/data.json), its commands are ones the CLI, params.yaml and dvc.yaml
accept, its links and paths lead to files that exist. All of it is read at test time, never copied here, so
a change to the code, the params or the run that leaves a page behind fails a test. No TensorFlow."""
import ast
import json
import re
import shlex
import subprocess
import sys
import types

import pytest
import yaml
from PIL import Image

from helpers import ROOT

README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"
MODEL_CARD = ROOT / "docs" / "model-card.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
ids = lambda page: page.name  # noqa: E731

MAX_LINES, MAX_WORDS = 150, 2000  # about ten minutes of reading (issue 45)


def pictures(page):
    """The local images a Markdown page shows: ![alt](path), paths relative to the page."""
    return [page.parent / target for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text())
            if "://" not in target]


def test_the_pages_show_pictures():
    assert {p.name for page in PAGES for p in pictures(page)} >= {"page.png", "explain.png"}
    assert ROOT / "docs/page.png" in pictures(README), "the README shows the page to try the model"


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_picture_a_page_shows_is_a_png_in_git(page):
    tracked = git_files()
    for picture in pictures(page):
        relative = picture.resolve().relative_to(ROOT).as_posix()
        assert relative in tracked, f"{page.name} shows {relative}, which git does not hold (a fresh clone lacks it)"
        assert not (ROOT / f"{relative}.dvc").exists(), f"{relative} is DVC-tracked: `dvc pull` fails without a remote"
        with Image.open(picture) as image:
            assert image.format == "PNG" and min(image.size) >= 200, relative


# --- reading the pages ---------------------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)


def prose(text):
    """The text outside fenced code blocks (each block blanked, so that line numbers stay)."""
    return FENCE.sub(lambda m: "\n" * m.group().count("\n"), text)


def code_lines(text):
    """Every line of every fenced block, its shell comment (` # …` or a whole-line `#`) cut off."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.splitlines()[1:-1]:
            lines.append(re.split(r"(?:^|\s)#", line, maxsplit=1)[0])
    return lines


def inline_code(text):
    """The `code spans` of the prose (a span broken over two lines joined with a space)."""
    return [" ".join(span.split("\n")) for span in re.findall(r"`([^`]+)`", prose(text)) if span.count("\n") <= 1]


def commands(text):
    """Shell commands the page shows (in fenced blocks or as `code`), each split into words; lines ending in a
    backslash are joined, and `a && b`, `a; b`, `a | b` are two commands."""
    joined = "\n".join(code_lines(text)).replace("\\\n", " ").splitlines() + inline_code(text)
    found = []
    for line in joined:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")  # operators outside quotes only
        lexer.whitespace_split = True
        try:
            tokens = list(lexer) + [";"]
        except ValueError:  # an unbalanced quote in an inline fragment: not a whole command
            continue
        words = []
        for token in tokens:
            if token.strip(";&|"):
                words.append(token)
                continue
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
                words = words[1:]
            if words:
                found.append(words)
            words = []
    return found


def git_files():
    return set(subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.split("\0"))


def dvc_stages():
    """dvc.yaml's stage names as `dvc repro` knows them: a matrix stage as name@value for each value."""
    names = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "matrix" in stage:
            (values,) = stage["matrix"].values()  # one axis, as the fold stage has
            names += [f"{name}@{value}" for value in values]
        else:
            names.append(name)
    return names


def dvc_outputs():
    """Every path dvc.yaml declares as a stage's output, metric or plot (what `dvc repro` or `dvc pull` makes)."""
    paths = []
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path = entry if isinstance(entry, str) else next(iter(entry))
                paths.append(path.split("${")[0].rstrip("/"))  # data/oof/fold${item.fold} → data/oof/fold
    return paths


# --- the README reads in ten minutes --------------------------------------------------------------------------

def test_the_readme_reads_in_ten_minutes():
    text = README.read_text()
    lines, words = len(text.splitlines()), len(text.split())
    assert lines <= MAX_LINES, f"README.md has {lines} lines, more than {MAX_LINES}: move detail to docs/"
    assert words <= MAX_WORDS, f"README.md has {words} words, more than {MAX_WORDS}: move detail to docs/"


def test_the_readme_keeps_no_hand_kept_counts_or_model_lists():
    """Counts of tests and lists of models fall behind the code: the README points to where they are instead."""
    from valence.registry import BACKBONES

    text = README.read_text()
    assert not re.search(r"\b\d[\d,]*\s+(?:fast |slow )?tests\b", text), "a test count: it drifts with every issue"
    named = sorted(name for name in BACKBONES if re.search(rf"\b{name}\b", text))
    assert not named, f"the README names {named}: say `any backbone in valence/registry.py` instead"
    assert not re.search(r"^\| *(?:package|module)s? *\|", text, re.M), "a module table: the docstrings say it"


# --- numbers: those of the committed run ----------------------------------------------------------------------

def runs():
    read = lambda path: json.loads((ROOT / path).read_text())  # noqa: E731
    return types.SimpleNamespace(evaluate=read("dvclive/evaluate/metrics.json"), data=read("metrics/data.json"),
                                 calibration=read("dvclive/train/calibration.json"))


def oof(key):
    return lambda r: r.evaluate["out_of_fold"][key]


def uncalibrated(key):
    return lambda r: r.evaluate["uncalibrated"][key]


def rating(name, *keys):
    def get(r):
        value = r.evaluate["ratings"][name]
        for key in keys:
            value = value[key]
        return value
    return get


ROC_AUC_EACH = lambda r: r.evaluate["per_fold"]["roc_auc_each"].values()  # noqa: E731
PER_FOLD_ROC_AUC = [lambda r: r.evaluate["per_fold"]["roc_auc"]["mean"],
                    lambda r: r.evaluate["per_fold"]["roc_auc"]["std"]]
BY_SCORE = lambda key: lambda r: r.evaluate["roc_auc_by_score"][key]  # noqa: E731
UNCERTAIN = lambda r: r.evaluate["uncertain"]  # noqa: E731
PHOTO_CHECK = lambda key: lambda r: r.evaluate["photo_check"][key]  # noqa: E731
KINDS_IN_FULL = lambda r: sum(share == 1 for share in r.evaluate["photo_check"]["kinds_flagged"].values())  # noqa: E731
KINDS = lambda r: len(r.evaluate["photo_check"]["kinds_flagged"])  # noqa: E731

# How each page words a number it quotes → where the run keeps it, one getter per (group) of the pattern.
# Patterns match text with every run of whitespace made one space.
README_HEADLINE = [
    (r"holds (\d+) photos", [lambda r: r.data["archive"]["images"]]),
    (r"(\d+) of them are labelled", [lambda r: r.data["images"]]),
    (r"the other (\d+) were rated exactly neutral", [lambda r: r.data["neutral_dropped"]]),
    (r"all (\d+) photos", [lambda r: r.data["images"]]),
    (r"\*\*Out of fold, all \d+ photos: ROC AUC (\d\.\d+), balanced accuracy (\d\.\d+), accuracy (\d\.\d+)\*\*",
     [oof("roc_auc"), oof("balanced_accuracy"), oof("accuracy")]),
    (r"always answering \"Positive\" gets accuracy (\d\.\d+)", [oof("majority_accuracy")]),
    (r"average precision (\d\.\d+)", [oof("average_precision")]),
    (r"per fold ROC AUC (\d\.\d+) ± (\d\.\d+)", PER_FOLD_ROC_AUC),
    (r"Brier score (\d\.\d+)", [oof("brier")]),
    (r"expected calibration error (\d\.\d+)", [oof("ece")]),
    (r"below the (\d\.\d+) that perfectly calibrated ones reach by chance", [oof("ece_null_p95")]),
    (r"labelled Uncertain: (\d+\.\d) % of them, and the rest are (\d\.\d+) accurate",
     [lambda r: 100 * UNCERTAIN(r)["uncertain_share"], lambda r: UNCERTAIN(r)["accuracy_labelled"]]),
    (r"Photos within (\d\.\d+) of the threshold", [lambda r: UNCERTAIN(r)["band"]]),
    (r"Pearson r (\d\.\d+) and (\d\.\d+)", [rating("valence", "pearson_r"), rating("arousal", "pearson_r")]),
]
MODEL_CARD_NUMBERS = [
    (r"\*\*ROC AUC (\d\.\d+), balanced accuracy (\d\.\d+), accuracy (\d\.\d+)\*\*",
     [oof("roc_auc"), oof("balanced_accuracy"), oof("accuracy")]),
    (r"\(Brier (\d\.\d+), ECE (\d\.\d+)\)", [oof("brier"), oof("ece")]),
    (r"always \"Positive\": (\d\.\d+)", [oof("majority_accuracy")]),
    (r"average precision (\d\.\d+)", [oof("average_precision")]),
    (r"per fold ROC AUC (\d\.\d+)–(\d\.\d+) \((\d\.\d+) ± (\d\.\d+)\)",
     [lambda r: min(ROC_AUC_EACH(r)), lambda r: max(ROC_AUC_EACH(r)), *PER_FOLD_ROC_AUC]),
    (r"Spearman ρ (\d\.\d+) between P\(Positive\) and the rated valence", [oof("spearman_valence")]),
    (r"The classifier alone scores (\d\.\d+), the valence head alone (\d\.\d+)",
     [BY_SCORE("classifier"), BY_SCORE("valence_head")]),
    (r"valence Pearson r (\d\.\d+) \(per fold (\d\.\d+) ± (\d\.\d+)\), Spearman ρ (\d\.\d+), mean absolute error "
     r"(\d\.\d+); arousal r (\d\.\d+) \((\d\.\d+) ± (\d\.\d+)\), ρ (\d\.\d+), MAE (\d\.\d+)",
     [rating("valence", "pearson_r"), rating("valence", "folds", "pearson_r", "mean"),
      rating("valence", "folds", "pearson_r", "std"), rating("valence", "spearman"), rating("valence", "mae"),
      rating("arousal", "pearson_r"), rating("arousal", "folds", "pearson_r", "mean"),
      rating("arousal", "folds", "pearson_r", "std"), rating("arousal", "spearman"), rating("arousal", "mae")]),
    (r"averages (\d\.\d+) before any calibration map", [uncalibrated("mean_probability")]),
    (r"\(a (\d\.\d+), b (\d\.\d+), c (\d\.\d+) on OASIS",
     [lambda r: r.calibration["a"], lambda r: r.calibration["b"], lambda r: r.calibration["c"]]),
    (r"reach that by chance in (\d\.\d) % of draws", [lambda r: 100 * r.evaluate["uncalibrated"]["ece_p_value"]]),
    (r"against ECE (\d\.\d+) \(median\) and (\d\.\d+) \(95th percentile\) .* a p-value of (\d\.\d+)",
     [oof("ece_null_median"), oof("ece_null_p95"), oof("ece_p_value")]),
    (r"out of fold (\d+\.\d) % of the photos are Uncertain, and the rest are (\d\.\d+) accurate \((\d\.\d+) for all\)",
     [lambda r: 100 * UNCERTAIN(r)["uncertain_share"], lambda r: UNCERTAIN(r)["accuracy_labelled"],
      lambda r: UNCERTAIN(r)["accuracy_all"]]),
    (r"threshold \((\d\.\d+): P\(Positive\) from", [lambda r: UNCERTAIN(r)["band"]]),
    (r"the most confident 50 % are (\d\.\d+) accurate, 80 % (\d\.\d+), all (\d\.\d+)",
     [lambda r, k=k: r.evaluate["selective"][f"accuracy_at_{k}"] for k in (50, 80, 100)]),
    (r"`uncertain\.narrowest_band`: (\d\.\d+) on OASIS", [lambda r: UNCERTAIN(r)["narrowest_band"]]),
    (r"(\d+\.\d) % Uncertain, the rest (\d\.\d+) accurate \(`uncertain\.cross_fitted`\)",
     [lambda r: 100 * UNCERTAIN(r)["cross_fitted"]["uncertain_share"],
      lambda r: UNCERTAIN(r)["cross_fitted"]["accuracy_labelled"]]),
    (r"mean P\(Positive\) (\d\.\d+) \((\d\.\d+) before the map\), Brier (\d\.\d+) \((\d\.\d+) before\), expected "
     r"calibration error \(10 bins\) (\d\.\d+) \((\d\.\d+) before\)",
     [oof("mean_probability"), uncalibrated("mean_probability"), oof("brier"), uncalibrated("brier"), oof("ece"),
      uncalibrated("ece")]),
    (r"calls the more likely class: accuracy (\d\.\d+), balanced accuracy (\d\.\d+)",
     [oof("accuracy"), oof("balanced_accuracy")]),
    (r"ROC AUC (\d\.\d+) for the valence head against (\d\.\d+) for the classifier",
     [BY_SCORE("valence_head"), BY_SCORE("classifier")]),
    (r"flags (\d+) of (\d+) OASIS photos", [PHOTO_CHECK("photos_flagged"), PHOTO_CHECK("photos")]),
    (r"(\d+) of (\d+) photos flagged \((\d\.\d) %\)",
     [PHOTO_CHECK("photos_flagged"), PHOTO_CHECK("photos"), lambda r: 100 * PHOTO_CHECK("photos_flagged_share")(r)]),
    (r"every kind flagged in full \((\d+) of (\d+) at (\d+) %",
     [KINDS_IN_FULL, KINDS, lambda r: 100 * PHOTO_CHECK("kinds_flagged_least")(r)]),
    (r"(\d+) labelled \((\d+) Positive, (\d+) Negative, (\d+) rated exactly neutral dropped\)",
     [lambda r: r.data["images"], lambda r: r.data["Positive"], lambda r: r.data["Negative"],
      lambda r: r.data["neutral_dropped"]]),
]
GUIDE_NUMBERS = [
    (r"on OASIS (\d\.\d+), (\d\.\d+) and (\d\.\d+) combined",
     [BY_SCORE("classifier"), BY_SCORE("valence_head"), oof("roc_auc")]),
]


def as_shown(value, shown):
    """``value`` written with as many decimals as ``shown`` has."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return f"{value:.{decimals}f}"


def quoted(text, patterns, run):
    """(pattern, shown, expected) for every match of every pattern; the spans of the groups matched; the patterns
    that match nowhere."""
    checks, spans, missing = [], [], []
    for pattern, getters in patterns:
        matches = list(re.finditer(pattern, text))
        if not matches:
            missing.append(pattern)
        for match in matches:
            assert len(getters) == len(match.groups()), pattern
            for group, get in enumerate(getters, start=1):
                checks.append((pattern, match.group(group), as_shown(get(run), match.group(group))))
                spans.append(match.span(group))
    return checks, spans, missing


def readme_headline():
    """The README above its picture, whitespace made single spaces and link targets blanked (a DOI has digits)."""
    text = README.read_text().split("![", 1)[0]
    text = re.sub(r"\]\(([^)]*)\)", lambda m: "](" + "x" * len(m.group(1)) + ")", text)
    return " ".join(text.split())


def test_the_readme_headline_is_the_committed_run():
    text = readme_headline()
    checks, spans, missing = quoted(text, README_HEADLINE, runs())
    assert not missing, f"the README's headline no longer words these as the test expects: {missing}"
    wrong = [(shown, expected, pattern) for pattern, shown, expected in checks if shown != expected]
    assert not wrong, f"README numbers differ from dvclive/evaluate/metrics.json or metrics/data.json: {wrong}"
    unchecked = [m.group() for m in re.finditer(r"\d+(?:[.,]\d+)*", text)
                 if not any(start <= m.start() and m.end() <= end for start, end in spans)]
    assert not unchecked, f"numbers above the README's picture that no test checks: {unchecked} (see README_HEADLINE)"


@pytest.mark.parametrize("page, patterns", [(MODEL_CARD, MODEL_CARD_NUMBERS), (GUIDE, GUIDE_NUMBERS)],
                         ids=["model-card.md", "guide.md"])
def test_the_docs_quote_the_committed_run(page, patterns):
    checks, _, missing = quoted(" ".join(page.read_text().split()), patterns, runs())
    assert not missing, f"{page.name} no longer words these as the test expects: {missing}"
    wrong = [(shown, expected, pattern) for pattern, shown, expected in checks if shown != expected]
    assert not wrong, f"{page.name}: numbers that differ from the committed run: {wrong}"


def test_the_number_check_fails_on_a_wrong_number():
    run = runs()
    right = as_shown(run.evaluate["out_of_fold"]["roc_auc"], "0.000")
    wrong = f"{float(right) + 0.001:.3f}"
    text = f"**Out of fold, all 1 photos: ROC AUC {wrong}, balanced accuracy 0.1, accuracy 0.1**"
    checks, _, _ = quoted(text, [entry for entry in README_HEADLINE if entry[0].startswith(r"\*\*Out of fold")], run)
    assert checks[0][1:] == (wrong, right)


# --- commands: the CLI, params.yaml and dvc.yaml accept them ---------------------------------------------------

def cli_commands():
    """{subcommand: its option strings} of the `valence` command; "" holds the command's own (--version)."""
    from valence.__main__ import parser

    top = parser()
    (subparsers,) = [a for a in top._actions if a.__class__.__name__ == "_SubParsersAction"]
    return {"": set(top._option_string_actions),
            **{name: set(sub._option_string_actions) for name, sub in subparsers.choices.items()}}


def valence_commands(page):
    for words in commands(page.read_text()):
        if words[0] == "valence":
            yield words[1:]
        elif words[:3] == ["python", "-m", "valence"]:
            yield words[3:]


@pytest.mark.parametrize("page", [README, GUIDE], ids=ids)
def test_every_valence_command_shown_exists(page):
    known = cli_commands()
    shown = [words for words in valence_commands(page) if words]
    if page == README:
        assert {words[0] for words in shown} >= {"predict", "serve"}, "the README shows predict and serve"
    for words in shown:
        if words[0].startswith("-"):  # the command's own option: `valence --version`
            words = ["", *words]
        assert words[0] in known, f"{page.name}: `valence {' '.join(words)}`: no such subcommand ({sorted(known)})"
        flags = {word.split("=")[0] for word in words[1:] if word.startswith("--")}
        assert flags <= known[words[0]], f"{page.name}: `valence {' '.join(words)}`: unknown {flags - known[words[0]]}"


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_stage_a_dvc_command_names_exists(page):
    stages = set(dvc_stages()) | {name.split("@")[0] for name in dvc_stages()}
    for words in commands(page.read_text()):
        if words[:2] in (["dvc", "repro"], ["dvc", "checkout"]):
            for target in words[2:]:
                if not target.startswith("-") and not re.search(r"[<…]", target):
                    assert target in stages, f"{page.name}: `{' '.join(words)}`: dvc.yaml has no stage {target}"


def stage_table(page):
    """The stage names in the first column of a page's `| stage | …` table, `fold@0` … `fold@4` spelt out."""
    names = []
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\| *stage *\|", line))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cell = line.split("|")[1]
        found = re.findall(r"`([\w@]+)`", cell)
        ranged = re.fullmatch(r"\s*`(\w+)@(\d+)` … `\1@(\d+)`\s*", cell)
        if ranged:
            name, first, last = ranged.groups()
            found = [f"{name}@{i}" for i in range(int(first), int(last) + 1)]
        names += found
    return names


@pytest.mark.parametrize("page", [README, GUIDE], ids=ids)
def test_the_stage_tables_list_every_stage_of_dvc_yaml(page):
    listed = stage_table(page)
    assert sorted(listed) == sorted(dvc_stages()), (
        f"{page.name}'s stage table lists {sorted(set(listed) - set(dvc_stages()))} that dvc.yaml lacks and "
        f"lacks {sorted(set(dvc_stages()) - set(listed))}")


def params_yaml():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def has_key(params, key):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


FILE_SUFFIX = re.compile(r"\.(?:py|ya?ml|json|md|png|csv|tsv|txt|html|keras|tflite|lock|npy|h5|zip|toml|pth)$")


def params_keys(text, sections):
    """params keys a page names: in `-S key=value` anywhere, and as a `code span` that is a key (`section.key`,
    `section.key: value`, `section.key.*`)."""
    keys = set(re.findall(r"-S\s+['\"]?([\w.]+)=", text))
    for span in inline_code(text):
        match = re.fullmatch(r"([a-z_]+(?:\.[a-z_0-9]+)+)(?:\.\*|: \S+)?", span)
        if match and match.group(1).split(".")[0] in sections and not FILE_SUFFIX.search(match.group(1)):
            keys.add(match.group(1))
    return keys


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_params_key_a_page_names_is_in_params_yaml(page):
    params = params_yaml()
    keys = params_keys(page.read_text(), set(params))
    missing = sorted(key for key in keys if not has_key(params, key))
    assert not missing, f"{page.name} names params that params.yaml does not have: {missing}"


@pytest.mark.parametrize("page", [README, GUIDE], ids=ids)
def test_every_dvc_exp_run_shown_is_accepted_by_params(page, tmp_path):
    """Each `dvc exp run -S …` applied to params.yaml as DVC would (YAML values), then every section loaded and
    checked by valence.params, as the stages would load them; a placeholder value (`<…>`, `…`) is left out."""
    from valence import params as valence_params

    runs_shown = [words for words in commands(page.read_text()) if words[:3] == ["dvc", "exp", "run"]]
    if page == README:
        assert any("download.source=path" in words for words in runs_shown), "the README shows your own photos"
    for words in runs_shown:
        document = params_yaml()
        for flag, assignment in zip(words, words[1:]):
            if flag != "-S":
                continue
            key, value = assignment.split("=", 1)
            assert has_key(document, key), f"{page.name}: `{' '.join(words)}`: params.yaml has no {key}"
            if re.search(r"[<…]", value):
                continue
            *parents, last = key.split(".")
            node = document
            for part in parents:
                node = node[part]
            node[last] = yaml.safe_load(value)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(document))
        for section in valence_params.SECTIONS:
            try:
                valence_params.load(section, path)
            except valence_params.PipelineError as error:
                pytest.fail(f"{page.name}: `{' '.join(words)}`: {error}")


def test_the_test_commands_are_ci_s_and_the_fast_run():
    text = README.read_text()
    ci = next(line for line in (ROOT / ".ci/run").read_text().splitlines() if line.startswith("python -m pytest"))
    shown_ci = 'python -m pytest -q -m ""'
    assert shown_ci in text and shlex.split(ci)[:len(shlex.split(shown_ci))] == shlex.split(shown_ci), (
        f"the README's CI command is not .ci/run's: {ci}")
    assert re.search(r"^python -m pytest +# the fast run", text, re.M)
    addopts = shlex.split(_pytest_ini()["addopts"])
    assert addopts[addopts.index("-m") + 1] == "not slow", "the plain `python -m pytest` is the fast run"


def _pytest_ini():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


@pytest.mark.parametrize("page", [README, GUIDE], ids=ids)
def test_every_python_one_liner_runs(page):
    """`python -c "…"` lines the page gives to list what would otherwise be a hand-kept list (models, modules)."""
    one_liners = [words for words in commands(page.read_text()) if words[:2] == ["python", "-c"]]
    if page == GUIDE:
        assert len(one_liners) >= 2, "the guide lists the models and the modules by a one-liner each"
    for words in one_liners:
        result = subprocess.run([sys.executable, "-c", words[2]], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and result.stdout.strip(), f"{page.name}: {words[2]}: {result.stderr}"


# --- links and paths: to files that exist ---------------------------------------------------------------------

def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page):
    return {slug(line.lstrip("#")) for line in prose(page.read_text()).splitlines() if re.match(r"#{1,6} ", line)}


def test_slug_is_githubs():
    assert slug("P(Positive) uses the valence head too") == "ppositive-uses-the-valence-head-too"
    assert slug("Not a photo?") == "not-a-photo" and slug("GPUs and bigger machines") == "gpus-and-bigger-machines"


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_relative_link_leads_to_a_file_and_heading(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name} links to {target}: {linked.name} has no such heading"


def known_path(path, tracked, outputs):
    """In git (a file, or a folder holding one), made by a stage of dvc.yaml (an output or a folder of one), or
    a local file git is told to ignore (`.dvc/config.local`: credentials stay out of git on purpose)."""
    path = path.rstrip("/")
    if path in tracked or any(name.startswith(path + "/") for name in tracked):
        return True
    if any(path == out or path.startswith(out + "/") or out.startswith(path + "/") for out in outputs):
        return True
    if path.split("/")[0] in {out.split("/")[0] for out in outputs}:  # data/, models/: all ignored, all outputs
        return False
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def paths_in(page, strict):
    """`code spans` that are paths: with a slash or a file suffix (strict), or with a slash under one of the
    repository's top-level folders. Placeholders (`<…>`, `…`, `*`, `$VAR`, `~`) and URLs are not paths."""
    tops = {name.split("/")[0] for name in git_files() if "/" in name} | {out.split("/")[0] for out in dvc_outputs()}
    for span in inline_code(page.read_text()):
        if re.search(r"[\s<>…*$~{}:|]", span) or span.startswith(("/", "-")):
            continue
        if strict and ("/" in span or FILE_SUFFIX.search(span)) and not re.fullmatch(r"\.\w+", span):
            yield span
        elif "/" in span and span.split("/")[0] in tops:
            yield span


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_path_a_page_names_exists(page):
    tracked, outputs = git_files(), dvc_outputs()
    missing = sorted({path for path in paths_in(page, strict=page == README) if not known_path(path, tracked, outputs)})
    assert not missing, f"{page.name} names paths that neither git nor dvc.yaml has: {missing}"


def module_defines(path, name):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_module_a_page_names_exists(page):
    """`valence.data.images` or `valence.data.non_photos.KINDS`: the module is a file, the name defined in it."""
    for span in inline_code(page.read_text()):
        if not re.fullmatch(r"valence(?:\.\w+)+", span):
            continue
        parts = span.split(".")
        for cut in range(len(parts), 0, -1):
            base = ROOT.joinpath(*parts[:cut])
            module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
            if module.exists():
                rest = parts[cut:]
                assert len(rest) <= 1, f"{page.name}: {span}: {'.'.join(rest)} is not a name in {module.name}"
                assert not rest or module_defines(module, rest[0]), f"{page.name}: {span}: not defined there"
                break
        else:
            pytest.fail(f"{page.name} names {span}, which is no module of the project")


# --- the model card's licences: read from the installed packages, never typed in ------------------------------

def licences_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("licences", ROOT / "docs" / "licences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_card_s_weights_table_is_what_the_installed_packages_state():
    """Every backbone's row, as docs/licences.py reads it now: a changed pin or package changes the card."""
    from valence.registry import BACKBONES

    licences = licences_module()
    table = licences.table()
    assert table in MODEL_CARD.read_text(), "the card's weights table is stale: python docs/licences.py"
    assert all(f"| `{name}` |" in table for name in BACKBONES)
    section = MODEL_CARD.read_text().split("## Licences and terms", 1)[1]
    for source in ("Apache License 2.0", "OASIS", "Source", "ImageNet", "your own photos", "not stated"):
        assert source in section, source


def fake_distribution(folder, metadata, licence=None):
    """An installed distribution's dist-info folder as pip writes it: METADATA, RECORD and maybe a LICENSE."""
    import importlib.metadata

    info = folder / "fake-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake\nVersion: 1.0\n" + metadata)
    record = ["fake-1.0.dist-info/METADATA,,"]
    if licence is not None:
        (info / "LICENSE").write_text(licence)
        record.append("fake-1.0.dist-info/LICENSE,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return importlib.metadata.PathDistribution(info)


def test_a_package_that_states_no_licence_is_said_to_state_none(tmp_path):
    licences = licences_module()
    assert licences.stated(fake_distribution(tmp_path / "a", "")) == licences.NOT_STATED
    assert licences.stated(fake_distribution(tmp_path / "b", "License: UNKNOWN\n")) == "License field: UNKNOWN"
    found = licences.stated(fake_distribution(tmp_path / "c", "Classifier: License :: OSI Approved :: MIT License\n",
                                              "MIT License\n\nCopyright (c) 2021 Someone\n\nPermission is …"))
    assert found == "classifier: MIT License; LICENSE file: “MIT License”, “Copyright (c) 2021 Someone”"
