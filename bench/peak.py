"""The two references of "fraction of peak": the best numpy GEMM, and the FMA peak of the CPU.

- ``gemm(threads)``: fp32 4096x4096 matmul through numpy's BLAS with its thread pool limited
  to ``threads`` (threadpoolctl), best of the repeats, and which BLAS kernel ran (OpenBLAS
  picks it per CPU; ``OPENBLAS_CORETYPE`` forces one, e.g. an AVX2 kernel on an AVX-512 CPU).
- ``fma_peak()``: cores x clock x fp32 lanes x 2 (multiply + add) x FMA units, read from
  /proc/cpuinfo and /sys (the FMA unit count is not exposed: 2 is assumed, true of every
  x86 core with AVX2 since Haswell/Zen 2; AMD family 0x19 runs AVX-512 as two 256-bit
  halves, so its lanes count as 8). The clock is the highest the kernel reports; a
  machine that boosts above it can beat this "peak".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Gemm:
    threads: int
    wall_gflops: float  # best of the repeats, by the clock
    cpu_gflops: float  # best of the repeats, per CPU second of each thread (see gemm())
    kernel: str  # e.g. "openblas 0.3.31 Haswell (OPENBLAS_CORETYPE=Haswell)"

    @property
    def gflops(self) -> float:
        """The reference: the larger of the two (on a quiet machine they agree)."""
        return max(self.wall_gflops, self.cpu_gflops)


def gemm(threads: int, n: int = 4096, repeat: int = 5) -> Gemm:
    """Best fp32 n x n GEMM rate of numpy with ``threads`` BLAS threads.

    Also per CPU second (flops / (process CPU seconds / threads)): on a shared machine the
    clock counts the time other processes held the cores, the CPU seconds do not, so that
    rate is what the cores deliver when they are ours. OpenBLAS threads spin while they
    wait, so it is not flattered by idle waits."""
    from threadpoolctl import threadpool_info, threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b  # warm-up: thread pool, pages
        walls, cpus = [], []
        for _ in range(repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            a @ b
            walls.append(time.perf_counter() - t0)
            cpus.append((time.process_time() - c0) / threads)
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    kernel = "unknown BLAS"
    if info:
        i = info[0]
        kernel = f"{i.get('internal_api')} {i.get('version')} {i.get('architecture') or ''}".strip()
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:
        kernel += f" (OPENBLAS_CORETYPE={forced})"
    return Gemm(threads, 2 * n**3 / min(walls) / 1e9, 2 * n**3 / min(cpus) / 1e9, kernel)


@dataclass(frozen=True)
class FmaPeak:
    cores: int
    ghz: float
    lanes: int  # fp32 values per FMA instruction, as executed
    fma_units: int
    isa: str
    clock_source: str

    def gflops(self, threads: int | None = None) -> float:
        cores = min(self.cores, threads) if threads else self.cores
        return cores * self.ghz * self.lanes * 2 * self.fma_units

    def formula(self, threads: int | None = None) -> str:
        cores = min(self.cores, threads) if threads else self.cores
        return (f"{cores} core(s) x {self.ghz:.2f} GHz ({self.clock_source}) x {self.lanes} fp32 lanes ({self.isa})"
                f" x 2 (FMA) x {self.fma_units} FMA units (assumed) = {self.gflops(threads):.0f} GFLOP/s")


def fma_peak(cpuinfo: str | None = None, max_khz: int | None = None, cores: int | None = None) -> FmaPeak:
    """The theoretical fp32 FMA peak of this machine (arguments: for tests of the parsing)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
    if max_khz is None:
        try:
            max_khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        except (OSError, ValueError):
            max_khz = None
    if max_khz:
        ghz, source = max_khz / 1e6, "cpufreq max"
    else:
        ghz, source = float(fields.get("cpu MHz", "0") or 0) / 1e3, "/proc/cpuinfo MHz"
    amd_family = int(fields.get("cpu family", "0") or 0) if fields.get("vendor_id") == "AuthenticAMD" else 0
    if "avx512f" in flags:
        isa, lanes = "AVX-512", 16
        if amd_family == 0x19:  # Zen 4: 512-bit instructions on 256-bit units
            isa, lanes = "AVX-512 on 256-bit units (Zen 4)", 8
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "AVX2+FMA", 8
    else:
        isa, lanes = "SSE", 4
    return FmaPeak(cores=cores, ghz=ghz, lanes=lanes, fma_units=2, isa=isa, clock_source=source)
