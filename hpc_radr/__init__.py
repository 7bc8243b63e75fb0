"""hpc-radr: imbalance-regularization sweeps of BirdNET custom-classifier training on Slurm and laptops."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpc-radr")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
