"""The network's layers, in forward order, with their shapes and cost: the one list of layer names.

Torch-free, so the results tables and charts (``bench.report.compare``, ``bench.report.plots``) and the CLI help
can import it without loading torch; ``models.network`` builds the modules under these names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSpec:
    """One benchmarkable layer: its submodule name, the input it sees, and its cost per image."""

    name: str
    input_shape: tuple[int, ...]  # per image, without the batch dimension
    output_shape: tuple[int, ...]
    flops: int  # per image; a multiply-add counts as 2 FLOP
    params: int


def _conv_flops(out_c: int, out_h: int, out_w: int, in_c: int, k: int) -> int:
    return 2 * out_c * out_h * out_w * in_c * k * k


# Input shape each layer sees inside the network, per image. Pools and flatten cost no FLOP here.
LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("conv1", (1, 28, 28), (32, 28, 28), _conv_flops(32, 28, 28, 1, 5), 32 * 25 + 32),
    LayerSpec("pool1", (32, 28, 28), (32, 14, 14), 0, 0),
    LayerSpec("conv2", (32, 14, 14), (64, 14, 14), _conv_flops(64, 14, 14, 32, 5), 64 * 800 + 64),
    LayerSpec("pool2", (64, 14, 14), (64, 7, 7), 0, 0),
    LayerSpec("fc1", (3136,), (1024,), 2 * 3136 * 1024, 3136 * 1024 + 1024),
    LayerSpec("fc2", (1024,), (10,), 2 * 1024 * 10, 1024 * 10 + 10),
)
LAYER_NAMES = tuple(spec.name for spec in LAYERS)
MODEL = "model"  # the target that is the whole network
TARGETS = (MODEL, *LAYER_NAMES)  # what the benchmark can time
# A profile splits one whole-model call into the layers plus "other" (flatten, dropout, framework
# overhead): the profile rows' targets and the columns of the "where the time goes" table.
OTHER = "other"
PROFILE_SEGMENTS = (*LAYER_NAMES, OTHER)
MODEL_FLOPS = sum(spec.flops for spec in LAYERS)  # FLOP per image of the whole network
MODEL_PARAMS = sum(spec.params for spec in LAYERS)


def layer_spec(name: str) -> LayerSpec:
    for spec in LAYERS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown layer {name!r}; choose one of {', '.join(LAYER_NAMES)}")
