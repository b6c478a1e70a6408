import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.network import (
    LAYER_NAMES,
    LAYERS,
    MODEL_FLOPS,
    MODEL_PARAMS,
    DeepMNIST,
    count_parameters,
    layer_module,
    layer_spec,
    trace_layers,
)


def test_parameter_count():
    assert MODEL_PARAMS == 3_274_634
    assert count_parameters(DeepMNIST()) == 3_274_634


def test_flops_per_layer():
    flops = {spec.name: spec.flops for spec in LAYERS}
    assert flops == {
        "conv1": 1_254_400,
        "pool1": 0,
        "conv2": 20_070_400,
        "pool2": 0,
        "fc1": 6_422_528,
        "fc2": 20_480,
    }
    assert MODEL_FLOPS == 27_767_808  # about 27.77 MFLOP per image


def test_layer_shapes_chain_through_the_network():
    model = DeepMNIST().eval()
    x = torch.rand(3, 1, 28, 28)
    for spec in LAYERS:
        if spec.name == "fc1":
            x = x.flatten(1)  # (N, 3136)
        assert tuple(x.shape[1:]) == spec.input_shape, spec.name
        x = layer_module(model, spec.name)(x)
        assert tuple(x.shape[1:]) == spec.output_shape, spec.name
        assert sum(p.numel() for p in layer_module(model, spec.name).parameters()) == spec.params


def test_layers_compose_to_the_whole_model():
    model = DeepMNIST().eval()
    x = torch.rand(4, 1, 28, 28)
    y = x
    for name in LAYER_NAMES:
        y = layer_module(model, name)(y.flatten(1) if name == "fc1" else y)
    torch.testing.assert_close(y, model(x), rtol=0, atol=0)
    assert model(x).shape == (4, 10)
    acts = trace_layers(model, x)
    assert list(acts) == list(LAYER_NAMES)
    torch.testing.assert_close(acts["fc2"][1], model(x), rtol=0, atol=0)
    assert acts["fc1"][0].shape == (4, 3136) and acts["conv2"][0].shape == (4, 32, 14, 14)


def test_tutorial_initialisation():
    torch.manual_seed(0)
    model = DeepMNIST()
    for name in ("conv1", "conv2", "fc1"):
        weight = layer_module(model, name)[0].weight
        bias = layer_module(model, name)[0].bias
        assert weight.abs().max() <= 0.2  # truncated at 2 stddev
        assert 0.08 < weight.std() < 0.095  # a 2-sigma truncated normal(0, 0.1) has std ~0.088
        assert torch.all(bias == 0.1)
    assert torch.all(model.fc2.bias == 0.1)


def test_unknown_layer():
    with pytest.raises(KeyError, match="unknown layer 'conv3'"):
        layer_spec("conv3")


def test_dropout_only_in_training():
    model = DeepMNIST()
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    assert not torch.equal(a, model(x))


def test_layer_list_is_the_networks_submodules():
    # models.layers is the one list of layer names: a submodule added without a LayerSpec fails here
    children = [name for name, _ in DeepMNIST().named_children() if name not in ("flatten", "dropout")]
    assert children == list(LAYER_NAMES)


def test_layer_list_imports_without_torch():
    # compare (its analysis and tables), plots and the CLI help read the layer list; it must not pull
    # torch in
    code = "import sys, models.layers, bench.report.analysis, bench.report.tables, bench.report.compare; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
