"""Array namespaces and devices for the Array API (GPU) path of EM.

The EM hot path of the Array API backend (``skmoe/_backends/_array_api.py``)
is written once against the `Array API standard
<https://data-apis.org/array-api/>`_ and runs on any
namespace that implements it: CuPy on a GPU (``device="cuda"``), and NumPy or
array-api-strict on the CPU, which is how the tests exercise it without a GPU.
The namespaces come from ``array_api_compat``, as vendored by scikit-learn
(``sklearn.externals.array_api_compat``, scikit-learn >= 1.6), so this path
adds no dependency. CuPy is imported only when it is asked for: importing
skmoe never imports it.

Which path a fit takes (:func:`use_array_api`), following scikit-learn's
conventions for Array API inputs:

- ``device="cuda"``: the Array API path on CuPy, whatever the input type
  (NumPy and pandas inputs are moved to the GPU once).
- CuPy inputs: the same path, even with the default ``device="cpu"``: the data
  already live on the GPU, and NumPy could not read them anyway.
- other non-NumPy Array API inputs (array-api-strict, PyTorch; not Dask) under
  ``sklearn.set_config(array_api_dispatch=True)``: the Array API path in the
  inputs' own namespace and device.
- everything else: the NumPy + numba CPU path.
"""

import importlib

import numpy as np
from sklearn import get_config

try:  # scikit-learn >= 1.6 vendors it
    from sklearn.externals import array_api_compat
except ImportError:  # pragma: no cover - then the standalone package
    import array_api_compat

_INSTALL_HINT = (
    "Install the GPU extra with `pip install skmoe[gpu]` (or a CuPy wheel "
    "matching your CUDA version, e.g. `pip install cupy-cuda12x`)."
)


def is_cupy_array(x):
    """Whether ``x`` is a CuPy array (never imports CuPy)."""
    return array_api_compat.is_cupy_array(x)


def use_array_api(device, X):
    """Whether a fit on ``X`` with ``device`` takes the Array API path."""
    if device != "cpu" or is_cupy_array(X):
        return True
    return (
        bool(get_config().get("array_api_dispatch", False))
        and array_api_compat.is_array_api_obj(X)
        and not array_api_compat.is_numpy_array(X)
        # lazy arrays would be computed at every scalar of every iteration
        and not array_api_compat.is_dask_array(X)
    )


def cuda_namespace():
    """The Array API namespace of CuPy and its current device.

    Raises
    ------
    ImportError
        When CuPy is not installed, naming the ``skmoe[gpu]`` extra.
    RuntimeError
        When CuPy is installed but finds no CUDA GPU.
    """
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            f"device='cuda' needs CuPy, which is not installed. {_INSTALL_HINT}"
        ) from exc
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, no driver, ...
        raise RuntimeError(
            f"device='cuda' found no usable CUDA GPU: CuPy reports {exc!r}. "
            "Use device='cpu', or run on a machine with an NVIDIA GPU and driver."
        ) from exc
    if n_gpus < 1:
        raise RuntimeError(
            "device='cuda' found no CUDA GPU (CuPy sees 0 devices). Use "
            "device='cpu', or run on a machine with an NVIDIA GPU."
        )
    xp_cupy = importlib.import_module(f"{array_api_compat.__name__}.cupy")
    return xp_cupy, cupy.cuda.Device()


def namespace_and_device(*arrays):
    """Array API namespace and device shared by ``arrays`` (None skipped)."""
    arrays = [a for a in arrays if a is not None]
    xp = array_api_compat.array_namespace(*arrays)
    return xp, array_api_compat.device(arrays[0])


def to_numpy(x):
    """A NumPy copy (or view) of an Array API array from any namespace.

    Anything else (None, NumPy arrays, pandas objects, lists) is returned
    unchanged, for scikit-learn's own validation to read (feature names,
    categorical columns).
    """
    if not array_api_compat.is_array_api_obj(x) or isinstance(x, np.ndarray):
        return x
    if is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
