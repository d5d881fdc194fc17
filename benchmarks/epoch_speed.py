"""How fast training runs, side by side on one machine, in one run: prints one JSON line.

    python benchmarks/epoch_speed.py                          # everything (~45 min on 2 cores)
    python benchmarks/epoch_speed.py --skip-pipelines         # the epoch timings only (~12 min)
    python benchmarks/epoch_speed.py --skip-epochs            # the two default pipelines only (~25 min)
    python benchmarks/epoch_speed.py --previous 6de57ff       # the commit whose default pipeline to compare

Needs the training split (`dvc repro split`) and, offline, KERAS_HOME as in the README. Each epoch timing
runs in its own process, so every one starts from the same thread settings, and is the median of epochs
2-4 (the first traces the graph). Keys:
- pure_compute_epoch_s: MobileNetV2 (train.fine_tune, the default model when this was written; top blocks
  trainable, the fine-tuning step) fit on pre-loaded, pre-augmented float32 tensors: the bound for any input
  pipeline;
- pipeline_epoch_s: the same model through valence.learn.train_on_images.dataset, augmenting as it goes;
- seed_generator_epoch_s: the seed's way: its network at 400×500, float32, fed by the legacy
  ImageDataGenerator.flow_from_directory with the seed's augmentation, TensorFlow's default threads;
- seed_model_ours_epoch_s: the same network through our pipeline, threads and precision;
- seed_model_pure_epoch_s: the same network on pre-augmented tensors: its compute bound;
- inference_images_per_s: that model scoring images (median of 3 passes);
- default_pipeline_s / previous_default_pipeline_s: `dvc repro --force`, every stage (download → export from
  the Keras-cache copy of OASIS, each commit's own default model) in git worktrees of HEAD and of --previous; train_cpu_percent is the train
  stage's CPU time over its wall time, peak_rss_mb the largest process of the new run, noop_repro_s a second
  `dvc repro` with nothing to do; roc_auc / previous_roc_auc their headline ROC AUC (out-of-fold from issue 25,
  before it the test split's);
- host_steal_percent: for each timing, the share of all cores' time the hypervisor gave to other machines
  (/proc/stat "steal"): a virtual machine's cores can be slowed from outside, and this says when.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS = "6de57ff"  # the last commit before the speed work (issue 10)
SEED_SIZE = (400, 500)


def training_rows(count):
    """The first ``count`` rows of the training split's manifest."""
    from valence.files import read_csv

    return read_csv(ROOT / "data/split/train.csv")[:count]


def training_images(count, height, width):
    """The first ``count`` images of the training split, as uint8, and their 0/1 labels."""
    from valence.data.images import load_images
    from valence.data.labels import targets

    rows = training_rows(count)
    return load_images([str(ROOT / r["path"]) for r in rows], height, width, desc="benchmark"), targets(rows)


def epoch_s(model, data, **fit_args):
    """Median seconds of epochs 2-4 (the first one traces); one slow epoch does not decide the number."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    clock = Clock()
    model.fit(data, epochs=4, verbose=0, callbacks=[clock], **fit_args)
    return round(statistics.median(clock.seconds[1:]), 2)


def host_cpu():
    """Jiffies since boot from /proc/stat: (busy, steal, total), or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq, steal, sum(fields[:8])


def pre_augmented(images, y, p, batch_size):
    """The images augmented once, ahead of time, as float32 tensors: input costs nothing during the epoch."""
    import numpy as np
    import tensorflow as tf

    from valence.learn.train_on_images import random_affine

    augmented = np.concatenate([random_affine(tf.cast(images[i:i + 64], tf.float32), p.augment, [p.seed, i])
                                for i in range(0, len(images), 64)])
    return tf.data.Dataset.from_tensor_slices((augmented, y)).batch(batch_size)


def default_model(p):
    from valence.learn.models import build, compile_model, unfreeze_top_blocks

    model = build(p, weights=None)  # the same arithmetic as ImageNet weights
    unfreeze_top_blocks(model, p.hyper.fine_tune_blocks)
    compile_model(model, 1e-5)
    return model


def measure(what, count):
    """One timing, in this (fresh) process."""
    from valence import runtime, train_params

    p = train_params.load(ROOT / "params.yaml").using("mobilenet_v2")  # the model timed, whatever train.model is
    if what != "seed_generator":
        runtime.configure(p.seed, p.precision, p.op_determinism)
    from valence.learn.models import build, compile_model, predictor
    from valence.learn.train_on_images import dataset

    h = p.hyper
    if what in ("pure_compute", "pipeline", "inference"):
        images, y = training_images(count, h.image_height, h.image_width)
        model = default_model(p)
        if what == "inference":
            run = predictor(model)
            run(dataset(images, y, 64), "warm-up")
            rates = []
            for _ in range(3):
                started = time.perf_counter()
                run(dataset(images, y, 64), "inference")
                rates.append(len(images) / (time.perf_counter() - started))
            return round(statistics.median(rates), 1)
        if what == "pipeline":
            return epoch_s(model, dataset(images, y, p.batch_size, seed=p.seed, augment=p.augment))
        return epoch_s(model, pre_augmented(images, y, p, p.batch_size))
    seed_p = p.using("seed_baseline", image_height=SEED_SIZE[0], image_width=SEED_SIZE[1])
    model = build(seed_p, weights=None)
    compile_model(model, 1e-3)
    if what in ("seed_model_ours", "seed_model_pure"):
        images, y = training_images(count, *SEED_SIZE)
        if what == "seed_model_pure":
            return epoch_s(model, pre_augmented(images, y, p, 32))
        return epoch_s(model, dataset(images, y, 32, seed=p.seed, augment=p.augment))
    # the seed: class folders read and augmented by ImageDataGenerator (no rescale: the network has it)
    import tensorflow as tf

    rows = training_rows(count)
    with tempfile.TemporaryDirectory() as folder:
        for i, row in enumerate(rows):
            (Path(folder) / row["label"]).mkdir(exist_ok=True)
            os.symlink(ROOT / row["path"], Path(folder) / row["label"] / f"{i:04d}{Path(row['path']).suffix}")
        generator = tf.keras.preprocessing.image.ImageDataGenerator(
            rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
            horizontal_flip=True, fill_mode="nearest")
        flow = generator.flow_from_directory(folder, target_size=SEED_SIZE, batch_size=32, class_mode="binary",
                                             seed=p.seed)
        return epoch_s(model, flow)


class Steal:
    """The share of all cores' time stolen by the hypervisor while the block ran (None off Linux)."""

    def __enter__(self):
        self.before, self.percent = host_cpu(), None
        return self

    def __exit__(self, *exc):
        after = host_cpu()
        if self.before and after:
            _, steal, total = (b - a for a, b in zip(self.before, after))
            self.percent = round(100 * steal / max(total, 1), 1)


def in_subprocess(what, count, steal):
    """One timing in a fresh process; ``steal[what]`` gets the stolen CPU share meanwhile."""
    with Steal() as stolen:
        out = subprocess.run([sys.executable, __file__, "--measure", what, "--images", str(count)], check=True,
                             capture_output=True, text=True, cwd=ROOT)
    steal[what] = stolen.percent
    return json.loads(out.stdout.strip().splitlines()[-1])


class StageWatch(threading.Thread):
    """Polls descendants for the train stage's process: its CPU time and lifetime."""

    def __init__(self):
        super().__init__(daemon=True)
        self.cpu_s, self.wall_s, self.done = 0.0, 0.0, False

    def run(self):
        import psutil

        me = psutil.Process()
        while not self.done:
            for child in me.children(recursive=True):
                try:
                    if any(part in ("stages/train.py", "stages.train") for part in child.cmdline()):  # before / after 27
                        times = child.cpu_times()
                        self.cpu_s = times.user + times.system + times.children_user + times.children_system
                        self.wall_s = time.time() - child.create_time()
                except psutil.Error:
                    pass
            time.sleep(0.5)


def repro(folder, env):
    subprocess.run([sys.executable, "-m", "dvc", "repro", "--force"], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def headline_roc_auc(folder):
    """The headline ROC AUC a worktree's evaluate wrote: out-of-fold (issue 25 on), the test split's before it,
    or metrics/metrics.json before dvclive."""
    live = folder / "dvclive/evaluate/metrics.json"
    if live.exists():
        summary = json.loads(live.read_text())
        return (summary.get("out_of_fold") or summary["test"])["roc_auc"]
    return json.loads((folder / "metrics/metrics.json").read_text())["roc_auc"]


def pipelines(previous, steal):
    """Default pipeline timings for HEAD and ``previous``, each in a fresh git worktree."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, rev in (("new", "HEAD"), ("previous", previous)):
            folder = Path(scratch) / name
            subprocess.run(["git", "worktree", "add", "--detach", str(folder), rev], cwd=ROOT, check=True,
                           capture_output=True)
            try:
                watch = StageWatch()
                watch.start()
                started = time.perf_counter()
                with Steal() as stolen:
                    repro(folder, env)
                steal[f"{name}_pipeline"] = stolen.percent
                seconds = round(time.perf_counter() - started, 1)
                watch.done = True
                auc = headline_roc_auc(folder)
                if name == "new":
                    result.update(default_pipeline_s=seconds, roc_auc=auc,
                                  train_cpu_percent=round(100 * watch.cpu_s / watch.wall_s),
                                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
                    started = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=folder, env=env,
                                   check=True, stdout=subprocess.DEVNULL)
                    result["noop_repro_s"] = round(time.perf_counter() - started, 2)
                else:
                    result.update(previous_default_pipeline_s=seconds, previous_roc_auc=auc,
                                  previous_train_cpu_percent=round(100 * watch.cpu_s / watch.wall_s))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)
    return result


def cpu_model():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256, help="training images per timed epoch")
    parser.add_argument("--previous", default=PREVIOUS, help="the commit whose default pipeline to compare")
    parser.add_argument("--skip-pipelines", action="store_true", help="only the epoch timings")
    parser.add_argument("--skip-epochs", action="store_true", help="only the default pipelines")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one timing, run in a child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.images)))
        return
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "images": args.images}
    steal = {}
    if not args.skip_epochs:
        for what in ("pure_compute", "pipeline", "seed_generator", "seed_model_ours", "seed_model_pure"):
            result[f"{what}_epoch_s"] = in_subprocess(what, args.images, steal)
            print(f"{what}_epoch_s: {result[f'{what}_epoch_s']}", file=sys.stderr, flush=True)
        result["inference_images_per_s"] = in_subprocess("inference", args.images, steal)
    if not args.skip_pipelines:
        result.update(pipelines(args.previous, steal))
    result["host_steal_percent"] = steal
    print(json.dumps(result))


if __name__ == "__main__":
    main()
