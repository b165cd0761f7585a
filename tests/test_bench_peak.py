"""bench.peak: the theoretical FMA peak read from /proc/cpuinfo-style text (no timing asserted)."""

from __future__ import annotations

import pytest

from bench import peak

ZEN5 = "vendor_id\t: AuthenticAMD\ncpu family\t: 26\ncpu MHz\t\t: 2596.120\nflags\t\t: fpu sse2 avx fma avx2 avx512f\n"


def test_fma_peak_reads_cores_clock_and_vector_width():
    p = peak.fma_peak(ZEN5, max_khz=None, cores=2)
    assert (p.lanes, p.ghz, p.clock_source) == (16, pytest.approx(2.59612), "/proc/cpuinfo MHz")
    assert p.gflops() == pytest.approx(2 * 2.59612 * 16 * 2 * 2)
    assert p.gflops(threads=1) == pytest.approx(p.gflops() / 2)
    assert "2 core(s) x 2.60 GHz" in p.formula() and "FMA units (assumed)" in p.formula()


def test_fma_peak_counts_zen4_avx512_as_256_bit_and_prefers_cpufreq():
    zen4 = ZEN5.replace(": 26", ": 25")
    assert peak.fma_peak(zen4, max_khz=3_700_000, cores=1).lanes == 8
    assert peak.fma_peak(zen4, max_khz=3_700_000, cores=1).ghz == pytest.approx(3.7)
    avx2 = ZEN5.replace(" avx512f", "")
    assert peak.fma_peak(avx2, cores=4).lanes == 8
    assert peak.fma_peak("flags: sse2\ncpu MHz: 1000", cores=1).lanes == 4
