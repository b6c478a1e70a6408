import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.data import to_input
from models.train import RECIPES, TrainConfig, recipe_config, train

# A few hundred images and a few dozen steps: real training, seconds of CPU.
SMALL = dataclasses.replace(
    RECIPES["fast"], steps=40, batch_size=32, subset=1024, log_every=0, eval_every=0, checkpoint_every=0
)


def _weights(path):
    return load_checkpoint(path).model_state


def test_short_training_lowers_the_loss(mnist, tmp_path):
    config = dataclasses.replace(SMALL, precision="fp32", channels_last=False, steps=60)
    x = to_input(mnist.train_images[:1024])
    y = torch.as_tensor(mnist.train_labels[:1024]).long()
    torch.manual_seed(config.seed)
    from models.network import DeepMNIST

    initial = torch.nn.functional.cross_entropy(DeepMNIST().eval()(x), y).item()
    result = train(config, mnist, tmp_path / "ck.safetensors", progress=False)
    model = result.checkpoint.model()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(model(x), y).item()
    assert final < 0.5 * initial
    assert result.test_accuracy > 0.6  # 60 steps on 1,024 images already generalise somewhat


def test_same_command_gives_same_weights(mnist, tmp_path):
    a = train(SMALL, mnist, tmp_path / "a.safetensors", progress=False)
    b = train(SMALL, mnist, tmp_path / "b.safetensors", progress=False)
    for key, value in a.checkpoint.model_state.items():
        assert torch.equal(value, b.checkpoint.model_state[key]), key


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_interrupted_and_resumed_equals_uninterrupted(mnist, tmp_path, precision):
    config = dataclasses.replace(SMALL, precision=precision, checkpoint_every=10)
    full = train(config, mnist, tmp_path / "full.safetensors", progress=False)
    part = tmp_path / "part.safetensors"
    first = train(config, mnist, part, stop_after=17, progress=False)  # crosses an epoch (32 steps)
    assert first.checkpoint.step == 17 and not first.checkpoint.complete
    second = train(config, mnist, part, stop_after=20, resume=True, progress=False)
    assert second.checkpoint.step == 37
    final = train(config, mnist, part, resume=True, progress=False)
    assert final.checkpoint.complete and final.checkpoint.step == config.steps
    for key, value in full.checkpoint.model_state.items():
        assert torch.equal(value, final.checkpoint.model_state[key]), key
    assert final.test_accuracy == full.test_accuracy


def test_resume_refuses_another_configuration(mnist, tmp_path):
    path = tmp_path / "ck.safetensors"
    train(SMALL, mnist, path, stop_after=5, progress=False)
    with pytest.raises(CheckpointError, match="another configuration"):
        train(dataclasses.replace(SMALL, lr=1e-2), mnist, path, resume=True, progress=False)


def test_save_restore_identical_outputs(mnist, tmp_path):
    result = train(SMALL, mnist, tmp_path / "ck.safetensors", progress=False)
    x = to_input(mnist.test_images[:64])
    restored = load_checkpoint(tmp_path / "ck.safetensors")
    assert restored.complete and restored.step == SMALL.steps
    assert restored.config["recipe"] == "fast" and restored.data_checksum == mnist.checksum
    assert restored.test_accuracy == result.test_accuracy
    with torch.no_grad():
        torch.testing.assert_close(result.checkpoint.model()(x), restored.model()(x), rtol=0, atol=0)
    # Re-saving a loaded checkpoint gives a loadable, identical checkpoint.
    save_checkpoint(restored, tmp_path / "copy.safetensors")
    again = load_checkpoint(tmp_path / "copy.safetensors")
    for key, value in restored.model_state.items():
        assert torch.equal(value, again.model_state[key])


def test_mismatched_checkpoint_is_refused(mnist, tmp_path):
    train(SMALL, mnist, tmp_path / "ck.safetensors", progress=False)
    ckpt = load_checkpoint(tmp_path / "ck.safetensors")
    ckpt.model_state["fc1.0.weight"] = torch.zeros(512, 3136)
    save_checkpoint(ckpt, tmp_path / "wrong.safetensors")
    with pytest.raises(CheckpointError, match=r"fc1.0.weight has shape \(512, 3136\).*\(1024, 3136\)"):
        load_checkpoint(tmp_path / "wrong.safetensors")
    del ckpt.model_state["fc1.0.weight"]
    save_checkpoint(ckpt, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match=f"{bad}: not a readable safetensors"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a deepmnist checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_recipes():
    tutorial = RECIPES["tutorial"]
    assert (tutorial.steps, tutorial.batch_size, tutorial.lr, tutorial.dropout) == (10_000, 50, 1e-4, 0.5)
    assert tutorial.lr_at(0) == tutorial.lr_at(9_999) == 1e-4
    fast = recipe_config("fast", steps=1000)
    assert fast.steps == 1000 and fast.lr_at(999) < 1e-6 and fast.lr_at(150) == pytest.approx(fast.lr)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("nope")
    assert TrainConfig().recipe == "fast"


@pytest.mark.slow
def test_default_recipe_reaches_99(trained_checkpoint):
    ckpt = load_checkpoint(trained_checkpoint)
    assert ckpt.complete
    assert ckpt.test_accuracy >= 0.990
