"""voxplug: fine-tune speech recognition models on your own voice, accent, vocabulary or language.

Plugins start with ``from voxplug import hookimpl`` (see :mod:`voxplug.hookspecs` for every hook) and import
everything else they need from :mod:`voxplug.api`.
"""

from voxplug.hookspecs import hookimpl
from voxplug.models.quantization import guard_bitsandbytes_import

# bitsandbytes (imported by peft whenever it is installed) would fetch a kernel from the Hub at import: not unless
# model.hub_kernels asks (voxplug.models.quantization)
guard_bitsandbytes_import()

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
