"""How TensorFlow uses this machine: threads, seeds, deterministic kernels, precision, and the devices training
runs on (`strategy`).

One inter-op thread and one intra-op thread per core keep both cores on the one op that runs. With two
inter-op threads on 2 cores, MobileNetV2's forward pass dipped to half speed on ~100 % CPU more often in short
probes; the dips still happen with one (docs/performance.md, cause not yet found). Results do not change.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import sys


def cores():
    """CPU cores this process may run on (respects taskset and container CPU sets); in a Dask worker, at most
    its threads (`dask worker --nthreads`), so workers sharing a machine do not oversubscribe it."""
    available = len(os.sched_getaffinity(0))
    if "distributed" in sys.modules:  # only a process that imported Dask can be one of its workers
        try:
            from distributed import get_worker

            return max(1, min(available, get_worker().state.nthreads))
        except ValueError:  # not in a worker
            pass
    return available


@contextlib.contextmanager
def _stderr_to_devnull():
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the usual way and loads it with stderr (file descriptor 2) sent to /dev/null."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import; the usual finders do the finding
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                with _stderr_to_devnull():
                    load(module)

            spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import():
    """TensorFlow prints C++ notes when its libraries load (oneDNN is on, which CPU instructions it uses, absl's
    "before InitializeLog"), and TF_CPP_MIN_LOG_LEVEL does not stop them all: load it with stderr closed,
    whoever imports it (keras too). Errors raised by the import still reach the caller. TF_CPP_MIN_LOG_LEVEL
    set to anything (0 shows everything) leaves TensorFlow as it is; otherwise it is set to 2 (errors only)."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.meta_path.insert(0, _QuietTensorFlowImport())


def configure(seed=None, precision="float32", op_determinism=False):
    """Set threads (before TensorFlow runs anything), then seeds and deterministic kernels when ``seed`` is given.

    ``precision`` is a Keras dtype policy: ``float32`` or ``mixed_bfloat16`` (worth it only on CPUs with
    bfloat16 units, e.g. AVX512_BF16 or AMX). ``op_determinism`` turns on TensorFlow's deterministic kernels:
    on CPU they made MobileNetV2 fine-tuning 1.5× slower on one core, and training was bit-identical without them.
    """
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(cores())
    except RuntimeError:  # TensorFlow already ran an op in this process (tests): its pools are fixed now
        pass
    keras.mixed_precision.set_global_policy(precision)
    if seed is not None:
        keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    if op_determinism:
        tf.config.experimental.enable_op_determinism()


def strategy():
    """How Keras spreads training: ``tf.distribute.MirroredStrategy`` over every visible GPU when there are
    several (or several logical CPU devices, as a test makes), so each takes a share of every batch; otherwise
    TensorFlow's default strategy, one device. train.batch_size stays the global batch."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()
