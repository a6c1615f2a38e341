"""Importing voxplug and then peft (which imports bitsandbytes) fetches nothing from the Hub unless asked.

bitsandbytes, on a CPU with AVX512-BF16, asks the ``kernels`` package for a matmul kernel from the Hub at import.
Each test runs a fresh Python whose ``huggingface_hub`` points at the loopback test Hub, and reads that Hub's
request log: a fetch shows up there as a request about ``kernels-community`` (the kernel's owner, whose trust is
checked first, then the kernel itself).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

KERNEL_OWNER = "kernels-community"
KERNEL_REPO = f"{KERNEL_OWNER}/quantization-bitsandbytes"

pytest.importorskip("bitsandbytes")
pytest.importorskip("kernels")


def avx512_bf16() -> bool:
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported())


pytestmark = pytest.mark.skipif(not avx512_bf16(), reason="bitsandbytes asks for a Hub kernel only on AVX512-BF16")


def import_in_fresh_python(hub_server: object, code: str) -> tuple[list[str], str]:
    """Run ``code`` in a new interpreter against the test Hub; return the paths it requested and its stderr."""
    env = {**os.environ, **hub_server.client_env(), "HF_HUB_OFFLINE": "0"}  # type: ignore[attr-defined]
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [request.path for request in hub_server.requests], result.stderr  # type: ignore[attr-defined]


@pytest.mark.slow  # a fresh Python importing torch and peft
def test_importing_peft_after_voxplug_fetches_no_kernel(hub_server: object) -> None:
    paths, stderr = import_in_fresh_python(
        hub_server, "import voxplug, peft, sys; assert 'bitsandbytes' in sys.modules; import bitsandbytes"
    )
    assert not [path for path in paths if KERNEL_OWNER in path]
    assert "gemm_4bit_forward" not in stderr  # bitsandbytes' complaint about the refused kernel is not shown


@pytest.mark.slow  # a fresh Python importing torch and peft
def test_hub_kernels_allowed_lets_bitsandbytes_ask_the_hub(hub_server: object) -> None:
    """The negative control: with ``model.hub_kernels`` the guard steps aside, and the request reaches the Hub (the
    proof that the first test would see a fetch)."""
    paths, _ = import_in_fresh_python(
        hub_server,
        "import voxplug; from voxplug.models.quantization import allow_bitsandbytes_hub_kernels; "
        "allow_bitsandbytes_hub_kernels(); import bitsandbytes",
    )
    assert [path for path in paths if KERNEL_OWNER in path]


def test_the_guard_leaves_kernels_get_kernel_as_it_was() -> None:
    import kernels

    from voxplug.models.quantization import no_hub_kernels

    original = kernels.get_kernel
    with no_hub_kernels(), pytest.raises(RuntimeError, match=r"model\.hub_kernels"):
        kernels.get_kernel(KERNEL_REPO, version=1)
    assert kernels.get_kernel is original
