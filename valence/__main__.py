"""Use a trained model: predict on files and folders, explain the scores with heatmaps, or serve it over HTTP.

    valence predict photos/ beach.jpg --out predictions.csv [--model models/model.tflite] [--scheduler tcp://…:8786]
    valence explain photos/ beach.jpg --out explained/ [--model models/model.tflite]
    valence serve [--model models/model.tflite] [--host 127.0.0.1] [--port 8000] [--token-file PATH]
    valence --version

(`python -m valence …` is the same command without the install.) predict writes a row per image (CSV, or Parquet
for an --out ending in .parquet), each naming the model that gave it (model_md5, model_source), and <out>.json
beside it: the model's identity, the settings, the counts and the times (valence.use.predict).

All three read threshold, uncertain_band and flip_average from params.yaml's evaluate section (so they score as
evaluate did) and serve its limits from the serve section; the flags override them. ``--model`` is by default the export stage's
``models/model.tflite``, run by LiteRT without TensorFlow: the same scores as ``models/model.keras`` (export
checks them) at 2.9× the photos a second (docs/performance.md); the ``.keras`` file works the same way.
"""
import argparse
import sys

from valence import __version__, config, params
from valence.errors import PipelineError, run_stage


def predict(args):
    import os

    from valence.files import refuse_replacing_inputs
    from valence.use.classifier import check_model_path, open_classifier
    from valence.use.predict import (image_files, is_parquet, parquet, predict_batches, report_skipped, sidecar_path,
                                     utc_now, write_predictions, write_sidecar)
    from valence.use.provenance import identity, made_by, source

    sidecar = sidecar_path(args.out)
    for path in (args.out, sidecar):
        refuse_replacing_inputs(path, args.paths)  # before any work, and even with --force
    if os.path.isdir(args.out):
        raise PipelineError(f"{args.out}: a folder; --out names the CSV file to write")
    if os.path.isdir(sidecar):
        raise PipelineError(f"{sidecar}: a folder where --out's sidecar goes; move it, or use another --out")
    for path in (args.out, sidecar):
        if os.path.lexists(path) and not args.force:
            raise PipelineError(f"{path}: already exists; add --force to replace it")
    if is_parquet(args.out):
        parquet()  # a missing pyarrow: said before any work
    p = params.load("evaluate")
    files = image_files(args.paths)  # a missing path or an empty folder fails before the model loads
    if os.path.isdir(f"{args.out}.parts"):  # a cluster run's parts inside a folder read are not photos
        files = without_files_under(files, f"{args.out}.parts")
    batch_size, threshold, band, flip_average = (chosen(args, p, name) for name in
                                                 ("batch_size", "threshold", "uncertain_band", "flip_average"))
    model, started = identity(check_model_path(args.model)), utc_now()  # once, here: cluster rows get the same
    if args.scheduler:  # docs/guide.md: On a cluster
        from valence import cluster
        from valence.use import predict_cluster

        cluster.use_tls(args.tls_ca_file, args.tls_cert, args.tls_key)  # the --tls-* flags into Dask's config
        batches, _, retried, parts = predict_cluster.predict_on_cluster(  # the parts, read back in input order
            args.scheduler, args.model, files, args.out, batch_size, threshold, flip_average,
            args.shard_size or predict_cluster.SHARD_SIZE, band)
    else:
        classifier = open_classifier(args.model)
        if classifier.ratings:  # what the numbers are: the raters' mean for a photo like it, on their scale
            print("ratings: " + ", ".join(f"{name} on {low:g}–{high:g}" for name, (low, high) in
                                          classifier.ratings.items()) + " (the training raters' scale)")
        if not classifier.photo_check:  # a model from before the photo check, or one trained on images
            print(f"note: {args.model} has no photo check (trained before it, or not on frozen features): "
                  "no photo column", file=sys.stderr)
        batches = predict_batches(classifier, files, batch_size, threshold, flip_average, band=band)
    counts, skipped = write_predictions(args.out, batches, model)
    report_skipped(skipped, len(files))
    if not counts["scored"]:
        raise PipelineError(f"none of the {len(files)} files is an image; nothing written to {args.out}")
    write_sidecar(args.out, model, counts, threshold, flip_average, started, utc_now(), band)
    labels, not_photos = {"Positive": 0, "Negative": 0, **counts["labels"]}, counts["not_photos"]
    print(f"{args.out}: {counts['scored']} images (" + ", ".join(f"{n} {label}" for label, n in labels.items())
          + (f"; {not_photos} do not look like photos: photo = no" if not_photos else "") + "), "
          f"model {args.model} (md5 {model['md5']}, {made_by(model)}{', ' + source(model) if source(model) else ''}"
          f"), scored by valence {__version__}; how it was made: {sidecar}")
    if args.scheduler:
        predict_cluster.finish(parts)
        print(f"on {args.scheduler}: " + ("shards retried: unknown" if retried is None else
              f"{retried} shard(s) ran again after their worker was lost" if retried else "no shard ran twice"))


def explain(args):
    from valence.use.classifier import open_classifier
    from valence.use.explain_files import explain_files, plan_maps, without_earlier_maps
    from valence.use.predict import image_files, report_skipped

    p = params.load("evaluate")
    files, earlier = without_earlier_maps(image_files(args.paths), args.out)
    if earlier:
        print(f"{args.out}: {earlier} map file(s) an earlier explain wrote there left out", file=sys.stderr)
    if not files:
        raise PipelineError(f"{args.out}: every file given is a map an earlier explain wrote there; nothing to explain")
    named, skipped = plan_maps(files, args.out)  # every map's name checked before the model loads
    if not named:
        report_skipped(skipped, len(files))
        raise PipelineError(f"none of the {len(files)} files is an image; nothing written to {args.out}")
    classifier = open_classifier(args.model)
    if args.occlusion:  # the model's own map aside: explained as a model without one is
        classifier.logit_map = False
    rows, unread = explain_files(classifier, named, args.out, p.threshold, chosen(args, p, "flip_average"),
                                 chosen(args, p, "uncertain_band"))
    report_skipped(skipped + unread, len(files))
    if not rows:
        raise PipelineError(f"none of the {len(files)} files is an image; nothing written to {args.out}")
    print(f"{args.out}: a map (.png, .json) for each of {len(rows)} images, model {classifier.path} "
          f"(md5 {classifier.version})")


def chosen(args, p, name):
    """The flag ``name`` where it was given, else params.yaml's value (``p``: the evaluate section)."""
    flag = getattr(args, name, None)
    return getattr(p, name) if flag is None else flag


def without_files_under(files, folder):
    """``files`` less those inside ``folder`` (URLs kept)."""
    from pathlib import Path

    from valence.use.predict import is_url

    inside = Path(folder).resolve()
    return [f for f in files if is_url(f) or inside not in Path(f).resolve().parents]


def serve(args):
    import dataclasses
    import logging

    import uvicorn

    from valence.use.classifier import check_model_path
    from valence.use.gate import read_token, refuse_open_bind, server_config
    from valence.use.serve import create_app

    check_model_path(args.model)  # before the server starts; the model itself loads in the background
    evaluate, limits = params.load("evaluate"), params.load("serve")
    if args.allowed_hosts:  # added to serve.allowed_hosts, checked as those are
        extra = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip())
        limits = dataclasses.replace(limits, allowed_hosts=limits.allowed_hosts + extra)
        limits.check()
    token = read_token(args.token_file)  # --token-file wins over $VALENCE_TOKEN
    refuse_open_bind(args.host, token, args.insecure)  # before binding: nothing is exposed
    server = None
    failure = []

    def stop(message):  # the model failed to load: a server that can never be ready should not keep running
        failure.append(message)
        server.should_exit = True

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    app = create_app(args.model, limits, token=token, host=args.host, threshold=evaluate.threshold,
                     flip_average=evaluate.flip_average, on_load_error=stop,
                     band=chosen(args, evaluate, "uncertain_band"))
    server = uvicorn.Server(server_config(app, args.host, args.port, limits))
    server.run()
    if failure:
        raise PipelineError(failure[0])


def photo_command(commands, name, help, out, out_help, run):
    """A subcommand over image files and folders: paths, --out, --model, --flip-average."""
    c = commands.add_parser(name, help=help)
    c.add_argument("paths", nargs="+", help="image files and folders")
    c.add_argument("--out", default=out, help=out_help)
    c.add_argument("--model", default=str(config.LITERT), help=".tflite from the export stage (LiteRT, the faster), "
                   "or .keras")
    c.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                   help="default: evaluate.flip_average")
    uncertain_band_flag(c)
    c.set_defaults(run=run)
    return c


def uncertain_band_flag(command):
    command.add_argument("--uncertain-band", type=float, default=None, metavar="BAND", help="label Uncertain a "
                         "P(Positive) less than BAND from the threshold; 0: never (default: evaluate.uncertain_band)")


def parser():
    top = argparse.ArgumentParser(prog="valence", description=__doc__.split("\n")[0])
    top.add_argument("--version", action="version", version=f"valence {__version__}")  # what model files record
    commands = top.add_subparsers(dest="command", required=True)
    p = photo_command(commands, "predict", "P(Positive) for image files and folders (recursively) → CSV or Parquet",
                      "predictions.csv", "CSV written (Parquet for a .parquet name): path, probability, label, "
                      "the model's ratings, model_md5, model_source; <out>.json beside it says how", predict)
    p.add_argument("--batch-size", type=int, default=None, help="default: evaluate.batch_size")
    p.add_argument("--threshold", type=float, default=None, help="default: evaluate.threshold")
    p.add_argument("--force", action="store_true", help="replace --out and its <out>.json when they exist (never one "
                   "of the inputs)")
    p.add_argument("--scheduler", default=None, help="a Dask scheduler (tcp://host:8786), or local:N for N worker "
                   "processes here: score in shards on a cluster, resumable (docs/guide.md: On a cluster)")
    p.add_argument("--shard-size", type=int, default=None, help="photos a cluster task (default 256)")
    p.add_argument("--tls-ca-file", default=None, help="a tls:// scheduler: the CA that signed its certificate (PEM)")
    p.add_argument("--tls-cert", default=None, help="a tls:// scheduler: this client's certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="a tls:// scheduler: the certificate's key (PEM), if not in it")
    e = photo_command(commands, "explain", "a heatmap per image of what pushes P(Positive) up or down → PNG + JSON",
                      "explained", "folder for <photo>.png and <photo>.json", explain)
    e.add_argument("--occlusion", action="store_true", help="occlusion maps (what, covered, lowers the score; 50 "
                   "passes a photo) even for a model that gives its own map in one pass")
    s = commands.add_parser("serve", help="an HTTP service: GET / (a page to try it), POST /predict, /explain, "
                                          "GET /healthz, /readyz, /metrics, /docs")
    s.add_argument("--model", default=str(config.LITERT), help=".tflite (served without TensorFlow, the faster), or "
                   ".keras")
    uncertain_band_flag(s)
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface (needs a token, "
                   "or --insecure)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token-file", default=None, help="a file holding the bearer token every route but /healthz and "
                   "the static pages then needs (wins over the environment variable VALENCE_TOKEN)")
    s.add_argument("--insecure", action="store_true", help="serve on a non-loopback --host without a token")
    s.add_argument("--allowed-hosts", default=None, metavar="NAMES", help="Host names clients may use, comma-"
                   "separated, added to serve.allowed_hosts (a public name: valence.example.com)")
    s.set_defaults(run=serve)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        raise PipelineError(f"--batch-size must be >= 1, got {args.batch_size}")
    if getattr(args, "shard_size", None) is not None and args.shard_size < 1:
        raise PipelineError(f"--shard-size must be >= 1, got {args.shard_size}")
    if getattr(args, "threshold", None) is not None and not 0 < args.threshold < 1:
        raise PipelineError(f"--threshold must be between 0 and 1 (exclusive), got {args.threshold}")
    if getattr(args, "uncertain_band", None) is not None and not 0 <= args.uncertain_band < 0.5:
        raise PipelineError(f"--uncertain-band must be in [0, 0.5), got {args.uncertain_band}")
    args.run(args)


def cli():
    """The `valence` command (pyproject.toml's project.scripts): errors as one line, as the stages do."""
    run_stage(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
