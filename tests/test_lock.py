"""The committed dvc.lock must vouch for the committed code and params: on a fresh clone of HEAD, `dvc status`
may report only outputs not yet pulled into the cache — never a changed dependency, param or command. A stale
lock makes every teammate who pulls the outputs re-run the whole pipeline (or, worse, trust outputs of code
that is not there). Refresh it with `dvc repro` on OASIS before committing code a stage depends on."""
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import DVC, ROOT, run


def lock_disagreements(clone, env):
    """Lines naming what `dvc status --json` in ``clone`` says differs from its dvc.lock, besides outputs (and
    the pipeline's own data deps, which a clone without a cache lacks: "deleted")."""
    status = json.loads(run(DVC + ["status", "--json"], clone, env).strip().splitlines()[-1])
    tracked = set(run(["git", "ls-files"], clone, env).splitlines())
    found = []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                found.append(f"{stage}: {change}")
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):  # a params file: {param: "modified" / "new" / "deleted"}
                    found += [f"{stage}: params {name} {how}" for name, how in state.items()]
                elif state != "deleted" or path in tracked:
                    found.append(f"{stage}: {path} {state}")
    return found


def clone_head(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="t@t")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, env=env)
    return clone, env


def test_the_committed_lock_matches_the_committed_code_and_params(tmp_path):
    clone, env = clone_head(tmp_path)
    assert lock_disagreements(clone, env) == [], "dvc.lock is stale: run `dvc repro` and commit dvc.lock"


def test_a_changed_dependency_or_param_is_found(tmp_path):
    """The check above can fail: an edit to a stage's code and to a param it reads, committed, are both named."""
    clone, env = clone_head(tmp_path)
    with (clone / "valence/errors.py").open("a") as file:
        file.write("# an edit the lock has not seen\n")
    params = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(params.replace("threshold: 0.5", "threshold: 0.6", 1))
    run(["git", "commit", "-qam", "edits"], clone, env)
    found = lock_disagreements(clone, env)
    assert "evaluate: valence/errors.py modified" in found
    assert "evaluate: params evaluate.threshold modified" in found
