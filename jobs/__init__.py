"""Package data: the example sweep files, shipped inside the package as hpc_radr.jobs (pyproject.toml maps
this folder) and read with importlib.resources, so an installed hpc-radr finds them from any folder."""
