"""The thread budget of a worker process started by a parallel backend.

joblib's loky backend starts each worker with ``OMP_NUM_THREADS`` set to the cores
divided by ``n_jobs``, dask's nanny starts its workers with ``OMP_NUM_THREADS=1``,
and Ray sets it to a task's ``num_cpus``: that is how workers times threads stays within
the cores. torch reads the variable when it is imported; :func:`capped_threads` keeps
a fit from raising torch's thread count above it afterwards.
"""

import os

import torch


def worker_thread_budget():
    """The ``OMP_NUM_THREADS`` of this process as an int, or ``None`` when unset."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    try:
        budget = int(value)
    except ValueError:
        return None
    return budget if budget >= 1 else None


def capped_threads(n_threads):
    """The thread count a fit asks for: ``n_threads`` when the user chose one,
    otherwise ``None`` (leave torch alone) unless torch runs more threads than the
    process's budget, which is then used.

    Examples
    --------
    >>> capped_threads(3)
    3
    """
    if n_threads is not None:
        return n_threads
    budget = worker_thread_budget()
    if budget is not None and torch.get_num_threads() > budget:
        return budget
    return None
