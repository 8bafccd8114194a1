"""How many torch CPU threads a block uses, chosen or measured, then restored."""

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


def auto_threads():
    """Threads for ``n_threads="auto"``: the cores that nothing else is using, at
    least one, and never more than torch's own setting (``torch.set_num_threads`` or
    ``OMP_NUM_THREADS`` keep their say).

    Small models spend their time in many small operations whose threads meet at a
    barrier after each one; a thread that has to wait for a core stalls all the
    others, so one thread too many costs far more than one too few.
    """
    free = usable_cores() - other_runnable()
    return max(1, min(free, torch.get_num_threads()))


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` intra-op threads inside the block and restore the setting
    afterwards; ``"auto"`` picks :func:`auto_threads`, ``None`` changes nothing."""
    if n_threads is None:
        yield
        return
    if n_threads == "auto":
        n_threads = auto_threads()
    before = torch.get_num_threads()
    if before != n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
