"""photofeh: stellar parameters from multi-band photometry, for galactic archaeology.

>>> import photofeh
>>> photofeh.__version__
'0.1.0'

``photofeh.load_model(path)`` loads a trained model (see :mod:`photofeh.model.predict`); the heavy modules
(PyTorch) are imported only when it is first used, so ``import photofeh`` stays light.
"""

from photofeh._version import __version__

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from photofeh.model.predict import load_model

        return load_model
    raise AttributeError(f"module 'photofeh' has no attribute {name!r}")
