"""`python -m hpc_radr` is the `hpc-radr` command."""

from hpc_radr.cli import main

main()
