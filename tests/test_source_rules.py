"""Rules the C sources keep (DESIGN.md): C never prints or exits, kernels have scalar twins."""
from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def _sources():
    return sorted(CSRC.rglob("*.c")) + sorted(CSRC.rglob("*.h"))


def test_c_never_prints_or_exits():
    banned = re.compile(r"\b(printf|fprintf|puts|perror|exit|abort|_Exit)\s*\(")
    offenders = []
    for p in _sources():
        for n, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if banned.search(code) and "snprintf" not in code and "vsnprintf" not in code:
                offenders.append(f"{p.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_every_kernel_slot_has_a_scalar_twin():
    """GEMV slots have scalar twins; a GEMM's reference is its own level's GEMV, token by token
    (test_kernels.py checks them bit for bit), so GEMM slots are not listed here."""
    header = (CSRC / "kernels" / "kernels.h").read_text()
    gemv = header[header.index("#define RWKV_FLOAT_SLOTS"):header.index("#define RWKV_GEMM_SLOTS")]
    slots = re.findall(r"X\((\w+), \w+\)", gemv)
    assert slots and all(s.startswith("gemv_") for s in slots), "no GEMV slots found"
    scalar = (CSRC / "kernels" / "dot_scalar.c").read_text()
    table = scalar[scalar.index("rwkv_kernels_scalar = {"):]
    for slot in slots:
        assert re.search(rf"\.{slot}\s*=\s*\w+", table), f"slot {slot} has no scalar kernel"


def test_simd_files_set_their_target_before_any_include():
    for p in (CSRC / "kernels").glob("dot_*.c"):
        if p.name == "dot_scalar.c":
            continue
        text = p.read_text()
        assert text.index("#pragma GCC target") < text.index("#include"), p.name
