"""The kernel classes a CPU's flags give: which int8 and bf16 instructions oneDNN's kernels run on (an int8 graph
rounds differently per class, so an artifact records the class its accuracy was checked on)."""

import pytest

from qla_sdk.machine import AVX512_VNNI_FLAGS, bf16_kernels, int8_kernels

SAPPHIRE_RAPIDS = {*AVX512_VNNI_FLAGS, "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx2"}
ZEN4 = {*AVX512_VNNI_FLAGS, "avx512_bf16", "avx2"}
CASCADE_LAKE = {*AVX512_VNNI_FLAGS, "avx2"}
ALDER_LAKE = {"avx2", "avx_vnni"}
SKYLAKE_X = {"avx512f", "avx512bw", "avx512vl", "avx2"}
ZEN3 = {"avx2", "fma"}
ARM = set()  # no x86 flags in /proc/cpuinfo (or none at all)


@pytest.mark.parametrize(
    ("flags", "int8", "bf16"),
    [
        (SAPPHIRE_RAPIDS, "amx_int8", "amx_bf16"),
        (ZEN4, "avx512_vnni", "avx512_bf16"),
        (CASCADE_LAKE, "avx512_vnni", "none"),
        (ALDER_LAKE, "avx_vnni", "none"),
        (SKYLAKE_X, "avx512", "none"),
        (ZEN3, "avx2_or_less", "none"),
        (ARM, "unknown", "unknown"),
    ],
    ids=["sapphire-rapids", "zen4", "cascade-lake", "alder-lake", "skylake-x", "zen3", "arm-or-no-flags"],
)
def test_kernel_classes_by_cpu_flags(flags, int8, bf16):
    assert int8_kernels(flags) == int8
    assert bf16_kernels(flags) == bf16


def test_avx512_vnni_needs_the_avx512_around_it():
    # vpdpbusd alone (a partial flag list) is not the AVX-512 VNNI class: the kernels need AVX-512 BW/VL too.
    assert int8_kernels({"avx512_vnni", "avx512f"}) == "avx2_or_less"
