"""Legacy torch.save files written here without PyTorch (stand-in torch modules), then read back."""
import collections
import io
import pickle
import sys
import types

import numpy as np
import pytest

from valence.errors import PipelineError
from valence.learn.torch_checkpoint import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict


class Storage:
    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array).reshape(-1)


class Tensor:
    """Pickles as torch does: _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named torch and torch._utils holding what the pickles name, so pickle can refer to them."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called when reading")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def save_legacy(path, state, storages, torch, corrupt=None):
    """torch.save's legacy format: magic, protocol, sys info, the dict, storage keys, then raw storages."""
    types_by_dtype = {np.dtype("float32"): torch.FloatStorage, np.dtype("int64"): torch.LongStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", types_by_dtype[obj.array.dtype], obj.key, "cpu", obj.array.size, None)
            return None

    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": PROTOCOL_VERSION, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    Pickler(out, protocol=2).dump(state)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for storage in storages:
        out.write(storage.array.size.to_bytes(8, "little") + storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())
    data = out.getvalue()
    path.write_bytes(corrupt(data) if corrupt else data)
    return path


def example(torch, tmp_path, corrupt=None):
    weights = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    shared = Storage("100", np.arange(20, dtype=np.float32))
    steps = Storage("200", np.array([5], dtype=np.int64))
    state = collections.OrderedDict([
        ("conv.weight", Tensor(Storage("300", weights), 0, (2, 3, 4), (12, 4, 1))),
        ("fc.weight", Tensor(shared, 2, (3, 4), (4, 1))),  # an offset into a storage
        ("fc.weight_t", Tensor(shared, 2, (4, 3), (1, 4))),  # a transposed view of the same storage
        ("bn.num_batches_tracked", Tensor(steps, 0, (), ())),
    ])
    path = save_legacy(tmp_path / "model.pth", state, [state["conv.weight"].storage, shared, steps], torch, corrupt)
    return path, weights, np.arange(20, dtype=np.float32)


def test_tensors_come_back_with_offsets_strides_and_dtypes(fake_torch, tmp_path):
    path, weights, shared = example(fake_torch, tmp_path)
    state = read_state_dict(path)
    assert list(state) == ["conv.weight", "fc.weight", "fc.weight_t", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["conv.weight"], weights)
    np.testing.assert_array_equal(state["fc.weight"], shared[2:14].reshape(3, 4))
    np.testing.assert_array_equal(state["fc.weight_t"], shared[2:14].reshape(3, 4).T)
    assert state["bn.num_batches_tracked"].dtype == np.int64 and state["bn.num_batches_tracked"] == 5
    state["fc.weight"][0, 0] = -1  # copies, not views into one buffer
    assert state["fc.weight_t"][0, 0] == 2


def test_a_pickle_that_would_run_code_is_refused(fake_torch, tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = save_legacy(tmp_path / "evil.pth", {"w": Exploit()}, [], fake_torch)
    with pytest.raises(PipelineError, match=r"evil.pth: refusing to unpickle (posix|os)\.system"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("corrupt, message", [
    (lambda data: data[:-10], "storage .* truncated"),
    (lambda data: data[:200], "not a readable torch.save file"),
    (lambda data: b"PK\x03\x04" + data, "a zip-format torch.save file"),
    (lambda data: pickle.dumps(123, protocol=2) + data[20:], "not a torch.save file .wrong magic number"),
    (lambda data: b"", "not a readable torch.save file"),
])
def test_damaged_files_are_clear_errors(fake_torch, tmp_path, corrupt, message):
    path, *_ = example(fake_torch, tmp_path, corrupt)
    with pytest.raises(PipelineError, match=f"model.pth: {message}"):
        read_state_dict(path)


def test_a_tensor_reaching_outside_its_storage_is_refused(fake_torch, tmp_path):
    storage = Storage("1", np.zeros(4, np.float32))
    path = save_legacy(tmp_path / "model.pth", {"w": Tensor(storage, 2, (2, 2), (2, 1))}, [storage], fake_torch)
    with pytest.raises(PipelineError, match="tensor w reaches outside its storage"):
        read_state_dict(path)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="absent.pth: cannot read"):
        read_state_dict(tmp_path / "absent.pth")
