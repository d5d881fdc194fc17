"""Read a PyTorch state dict saved in torch.save's legacy (non-zip) format into NumPy arrays, without PyTorch.

The format is five pickles and raw data: the magic number, the protocol version, system info (byte order,
type sizes), the state dict itself, whose tensors point at storages by key, the list of storage keys in file
order, then each storage as an 8-byte little-endian element count followed by its raw little-endian elements.

Unpickling can run arbitrary code, so only what a state dict of tensors needs is allowed: OrderedDict,
``torch._utils._rebuild_tensor_v2`` (replaced by a harmless stand-in) and the ``torch.*Storage`` types;
anything else is refused with an error naming the file.
"""
import collections
import pickle
import typing

import numpy as np

from valence.errors import PipelineError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}


class StorageType(typing.NamedTuple):
    name: str  # e.g. FloatStorage


class StorageRef(typing.NamedTuple):
    key: str
    dtype: np.dtype
    size: int  # elements


class TensorRef(typing.NamedTuple):
    storage: StorageRef
    offset: int  # elements
    shape: tuple
    stride: tuple  # elements


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stands in for torch._utils._rebuild_tensor_v2: records where the tensor lies, builds nothing yet."""
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise PipelineError(f"{self.path}: refusing to unpickle {module}.{name}: a state dict of tensors never "
                            "needs it, and a pickle can run code")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise PipelineError(f"{self.path}: unexpected storage reference {pid!r:.80}")
        _, storage_type, key, _location, size, view_metadata = pid
        if view_metadata is not None:
            raise PipelineError(f"{self.path}: storage views are not supported")
        return StorageRef(str(key), np.dtype(STORAGE_DTYPES[storage_type.name]), int(size))


def read_state_dict(path):
    """{name: array} of every tensor in the legacy torch.save file at ``path``."""
    try:
        with open(path, "rb") as file:
            load = RestrictedUnpickler(file, path).load
            if file.read(2) == b"PK":
                raise PipelineError(f"{path}: a zip-format torch.save file; only the legacy format is read")
            file.seek(0)
            if load() != MAGIC_NUMBER:
                raise PipelineError(f"{path}: not a torch.save file (wrong magic number)")
            if load() != PROTOCOL_VERSION:
                raise PipelineError(f"{path}: unsupported torch.save protocol version")
            info = load()
            if not (isinstance(info, dict) and info.get("little_endian")):
                raise PipelineError(f"{path}: only little-endian torch.save files are read")
            state = load()
            keys = load()
            refs = {t.storage.key: t.storage for t in state.values() if isinstance(t, TensorRef)} \
                if isinstance(state, dict) else {}
            storages = {}
            for key in keys:
                count = int.from_bytes(file.read(8), "little")
                ref = refs.get(key)
                if ref is None:
                    raise PipelineError(f"{path}: storage {key} belongs to no tensor")
                raw = file.read(count * ref.dtype.itemsize)
                if count != ref.size or len(raw) != count * ref.dtype.itemsize:
                    raise PipelineError(f"{path}: storage {key} is truncated or has the wrong size")
                storages[key] = np.frombuffer(raw, ref.dtype)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise PipelineError(f"{path}: not a readable torch.save file ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(state, dict) or not all(isinstance(t, TensorRef) for t in state.values()):
        raise PipelineError(f"{path}: not a state dict of tensors")
    return {name: materialize(tensor, storages, path, name) for name, tensor in state.items()}


def materialize(tensor, storages, path, name):
    """The tensor's elements, copied out of its storage with its offset, shape and strides."""
    data = storages.get(tensor.storage.key)
    if data is None:
        raise PipelineError(f"{path}: tensor {name} points at a missing storage")
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride) if n)
    if min(tensor.shape, default=1) < 0 or min(tensor.stride, default=0) < 0 or (all(tensor.shape) and last >= len(data)):
        raise PipelineError(f"{path}: tensor {name} reaches outside its storage")
    strides = tuple(s * data.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(data[tensor.offset:], shape=tensor.shape, strides=strides)
    return np.array(view, dtype=data.dtype.newbyteorder("="))
