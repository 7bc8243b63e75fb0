"""hpc-radr: imbalance-regularization sweeps of BirdNET custom-classifier training on Slurm and laptops."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpc-radr")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions by distribution name ("not installed" for a missing one)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
