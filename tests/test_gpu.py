"""A GPU that Slurm grants is a GPU TensorFlow may use, and a run that trained on the CPU anyway is named.

No GPU exists on these machines: what is checked is the environment CUDA reads when TensorFlow first
initialises its devices (the real-cluster test checks it inside a Slurm task with a fake GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hpc_radr.results import unused_gpu

PROBE = """
import json, os
import tensorflow as tf
from hpc_radr.birdnet import runtime
runtime.import_birdnet()
import birdnet_analyzer.model  # BirdNET's own import, which blanks CUDA_VISIBLE_DEVICES, has happened
tf.config.set_visible_devices([], "GPU")  # raises RuntimeError once TensorFlow has initialised its devices
print(json.dumps({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}))
"""


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.training
def test_the_gpus_slurm_granted_stay_visible_after_birdnet_is_imported():
    assert probe(CUDA_VISIBLE_DEVICES="1")["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.training
def test_without_a_granted_gpu_birdnet_keeps_tensorflow_on_the_cpu():
    assert probe()["CUDA_VISIBLE_DEVICES"] == ""


def test_a_run_given_a_gpu_that_trained_on_the_cpu_is_flagged():
    assert unused_gpu({"gpus": {"SLURM_JOB_GPUS": "1", "tensorflow": [], "trained_on": "CPU"}})
    assert not unused_gpu({"gpus": {"SLURM_JOB_GPUS": "1", "tensorflow": ["/physical_device:GPU:0"]}})
    assert not unused_gpu({"gpus": {"SLURM_JOB_GPUS": None, "tensorflow": []}})  # no GPU asked for
    assert not unused_gpu({})  # results written before devices were recorded
