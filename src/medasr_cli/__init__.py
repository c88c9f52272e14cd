"""medasr: adapt NVIDIA Parakeet TDT to clinical speech and serve it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medasr")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
