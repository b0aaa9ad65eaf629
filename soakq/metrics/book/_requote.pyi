"""Types of the compiled requote walk (``_requote.c``)."""

from numpy import ndarray as Buffer

SOURCE_SHA256: str

def walk(
    mid: Buffer,
    phase: Buffer,
    jump_steps: Buffer,
    n: int,
    tol_bps: float,
    tail_steps: float,
    gap_steps: float,
    interval: float,
    tolerance: float,
) -> tuple[bytes, bytes]: ...
