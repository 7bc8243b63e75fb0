"""Package data: the sbatch templates of `hpc-radr scripts`, shipped inside the package as
hpc_radr.sbatch_templates (pyproject.toml maps this folder) and read with importlib.resources."""
