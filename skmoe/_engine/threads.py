"""How many torch CPU threads a block uses, chosen or measured, then restored.

The thread count of a computation whose result can depend on it (a ``fit``: torch
splits some reductions between its threads) is never read from the machine's load:
``n_threads="auto"`` fits with :data:`AUTO_FIT_THREADS`. Prediction computes every
row the same way whatever the thread count (see :mod:`skmoe._inference`), so there
``"auto"`` may look at the load to choose how many blocks of rows run at once.
"""

import contextlib
import os

import torch


def usable_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def other_runnable():
    """Threads of other processes that want a core right now, as well as Linux
    reports it (the runnable count in ``/proc/loadavg``, less this thread); elsewhere
    the one-minute load average; ``0`` where neither exists."""
    try:
        with open("/proc/loadavg") as handle:
            running = int(handle.read().split()[3].split("/")[0])
        return max(running - 1, 0)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0


AUTO_FIT_THREADS = 1
"""torch threads of a ``fit`` with ``n_threads="auto"``. Small models spend their
time in many small operations whose threads meet at a barrier after each one: a
thread that has to wait for a core stalls all the others, so on a shared machine one
thread too many costs far more than one too few (docs/performance.md measured 4 to
22 times slower fits), while a free machine gained at most some 16% from a second
thread. A fixed count also keeps a seeded fit's result independent of what else
runs on the machine."""


def idle_threads():
    """The cores that nothing else is using, at least one, and never more than
    torch's own setting (``torch.set_num_threads`` or ``OMP_NUM_THREADS`` keep their
    say). It changes with the machine's load: only for work whose result does not
    depend on it (how many independent blocks of rows a prediction runs at once)."""
    free = usable_cores() - other_runnable()
    return max(1, min(free, torch.get_num_threads()))


def resolve_fit_threads(n_threads):
    """The intra-op thread count ``n_threads`` asks of a fit: an int as given,
    :data:`AUTO_FIT_THREADS` for ``"auto"``, ``None`` (torch's own setting) for
    ``None``; a function of the parameter alone, never of the load."""
    return AUTO_FIT_THREADS if n_threads == "auto" else n_threads


def prediction_workers(n_threads):
    """How many blocks of rows a CPU prediction runs at once: an int as given,
    :func:`idle_threads` for ``"auto"``, torch's setting for ``None``. Each block
    runs on one intra-op thread, so this never changes a prediction's bits."""
    if n_threads == "auto":
        return idle_threads()
    if n_threads is None:
        return torch.get_num_threads()
    return int(n_threads)


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` intra-op threads inside the block and restore the setting
    afterwards; ``"auto"`` is :func:`resolve_fit_threads`'s count, ``None`` changes
    nothing."""
    n_threads = resolve_fit_threads(n_threads)
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
