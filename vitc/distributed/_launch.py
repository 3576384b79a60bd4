"""Rank and world size as the MPI launcher announces them in the environment, read without importing MPI
(so a single process never loads mpi4py). Open MPI sets OMPI_COMM_WORLD_*; MPICH/Hydra and Slurm's PMI set PMI_*."""
import os

_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")


def _first_int(names, default):
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise RuntimeError(f"vitc.distributed: environment variable {name}={value!r} is not an integer") from None
    return default


def launched_world_size():
    """Number of processes the MPI launcher started (1 when not under mpirun)."""
    return _first_int(_SIZE_VARS, 1)


def launched_rank():
    """This process's rank as the launcher announces it (0 when not under mpirun)."""
    return _first_int(_RANK_VARS, 0)
