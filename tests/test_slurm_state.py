"""Reading Slurm 22.05's answers (lines as sacct and squeue print them) into per-task states."""

from hpc_radr.executors.slurm_state import normalize, parse

SACCT = """\
41|COMPLETED
42_0|COMPLETED
42_1|CANCELLED by 0
42_2|OUT_OF_MEMORY
42_3|TIMEOUT
42_3.batch|CANCELLED
42_[4-6%2]|PENDING
"""

SQUEUE = """\
42_4|RUNNING|None
42_5|PENDING|JobArrayTaskLimit
42_6|PENDING|JobArrayTaskLimit
43|PENDING|Dependency
"""


def test_sacct_lines_give_one_state_per_task_and_expand_folded_pending_tasks():
    states = parse(SACCT)
    assert states[("41", None)] == "COMPLETED"
    assert states[("42", 1)] == "CANCELLED by 0" and normalize(states[("42", 1)]) == "cancelled"
    assert normalize(states[("42", 2)]) == "out_of_memory" and normalize(states[("42", 3)]) == "timeout"
    assert [states[("42", k)] for k in (4, 5, 6)] == ["PENDING"] * 3
    assert ("42.batch", None) not in states and len(states) == 8  # job steps are not tasks


def test_squeue_lines_keep_why_a_pending_task_waits():
    states = parse(SQUEUE)
    assert states[("42", 4)] == "RUNNING"  # a running task's reason is "None": nothing to say
    assert states[("42", 5)] == "PENDING (JobArrayTaskLimit)" and normalize(states[("42", 5)]) == "pending"
    assert states[("43", None)] == "PENDING (Dependency)"


def test_unknown_states_count_as_running_so_nothing_is_submitted_twice():
    assert normalize("SOMETHING_NEW") == "running" and normalize("COMPLETING") == "running"
    assert normalize("PREEMPTED") == "pending" and normalize("REQUEUED") == "pending"
