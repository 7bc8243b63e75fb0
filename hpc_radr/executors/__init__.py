"""Executors: how the tasks of a submission reach processes. ``local`` runs them on this machine;
``slurm`` submits job arrays. Both run the same functions of ``hpc_radr.runner``."""
