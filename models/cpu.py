"""What this CPU computes natively: bf16 kernels in oneDNN or not (training and the torch runtimes)."""

from __future__ import annotations

import torch


def cpu_bf16_reason() -> str | None:
    """None when oneDNN has bfloat16 kernels for this CPU, else why bf16 on the CPU is not used.

    torch's check is AVX512BW + VL + DQ (x86) or the Arm BF16 extension; native bf16 dot products
    need AVX512_BF16 or AMX (this project's reference CPU has AVX512_BF16), older AVX-512 CPUs
    convert to fp32 inside oneDNN (correct, usually slower than fp32). Without them (an AVX2-only
    CPU) bf16 autocast falls back to reference kernels, many times slower than fp32."""
    if not torch.backends.mkldnn.is_available():
        return "torch built without oneDNN (mkldnn): no bfloat16 CPU kernels"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no bfloat16 kernels in oneDNN (needs AVX-512 BW/VL/DQ, AVX512_BF16 or AMX)"
    return None
