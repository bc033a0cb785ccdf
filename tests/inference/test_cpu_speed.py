"""The CPU fast paths give the plain path's output, and the compiled-package cache is keyed right.

Compiling takes tens of seconds even for a one-block network, so the compiling tests share one
package per module (a fixture) and are marked slow; the decisions and the cache keys are checked
without compiling.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference import cpu_speed
from monai_tat.inference.cpu_speed import (
    TOLERANCE,
    CompiledSliceNetwork,
    artifact_key,
    compile_for_cpu,
    compile_pays_off,
    cpu_compile_mode,
    eager_network,
    prepare_cpu_network,
)
from monai_tat.networks.blocks import TransformerBlock

CPU = torch.device("cpu")
SIZE = (24, 20)


def one_block_network(seed: int = 0) -> nn.Module:
    """1 channel in and out through one transformer block (LayerNorm, channel attention, GDFN)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), TransformerBlock(4, 1, 2.0), nn.Conv2d(4, 1, 3, padding=1)).eval()


def test_mode_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(cpu_speed.MODE_ENV, raising=False)
    assert cpu_compile_mode() == "auto"
    monkeypatch.setenv(cpu_speed.MODE_ENV, "OFF")
    assert cpu_compile_mode() == "off" and cpu_compile_mode("on") == "on"
    monkeypatch.setenv(cpu_speed.MODE_ENV, "fast")
    with pytest.raises(UserInputError, match="MONAI_TAT_CPU_COMPILE"):
        cpu_compile_mode()


def test_cache_key_follows_weights_size_and_threads():
    network = one_block_network()
    key = artifact_key(network, 24, 20, threads=2)
    assert key == artifact_key(one_block_network(), 24, 20, threads=2)  # same weights, same key
    assert key != artifact_key(network, 20, 24, threads=2)
    assert key != artifact_key(network, 24, 20, threads=1)
    with torch.no_grad():
        network[0].bias[0] += 1e-6
    assert key != artifact_key(network, 24, 20, threads=2)


def test_auto_keeps_small_volumes_other_modules_and_gpus_eager(tmp_path, tiny_tat, tiny_amir):
    from monai_tat.inference import load_model

    tat, amir = load_model("tat"), load_model("amir")  # the shipped widths, whose break-even was measured
    assert not compile_pays_off(tiny_tat, 512, 512, 10_000)  # an unmeasured width: only when cached
    assert not compile_pays_off(tat, 512, 512, 300) and compile_pays_off(tat, 192, 192, 900)
    assert not compile_pays_off(amir, 256, 256, 300) and compile_pays_off(amir, 512, 512, 120)
    assert not compile_pays_off(one_block_network(), 512, 512, 10_000)
    assert prepare_cpu_network(tiny_tat, CPU, 64, 64, 10, "auto", tmp_path) is tiny_tat
    # a module that is not one of the package's networks is never compiled unasked
    other = one_block_network()
    assert prepare_cpu_network(other, CPU, 512, 512, 1000, "auto", tmp_path) is other
    assert prepare_cpu_network(tiny_tat, CPU, 512, 512, 1000, "off", tmp_path) is tiny_tat
    assert prepare_cpu_network(tiny_tat, torch.device("meta"), 512, 512, 1000, "on", tmp_path) is tiny_tat
    assert not any(tmp_path.iterdir())  # nothing was compiled


def test_a_failed_compilation_warns_and_stays_eager(tmp_path, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(cpu_speed, "compile_for_cpu", no_compiler)
    network = one_block_network()
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler found"):
        assert prepare_cpu_network(network, CPU, *SIZE, 1000, "on", tmp_path) is network


def test_a_compiled_network_that_differs_is_dropped_for_the_eager_one(monkeypatch):
    network = one_block_network()
    monkeypatch.setattr(cpu_speed, "compile_for_cpu", lambda net, h, w, cache: (lambda x: net(x) + 1.0, 0.0, False))
    fast = CompiledSliceNetwork(network, *SIZE)
    x = torch.rand(2, 1, *SIZE)
    with torch.no_grad(), pytest.warns(UserWarning, match="differs from the eager one"):
        out = fast(x)
    with torch.no_grad():
        assert torch.equal(out, network(x)) and torch.equal(fast(x), network(x))
    assert fast.max_abs_diff == pytest.approx(1.0) and eager_network(fast) is network


@pytest.fixture(scope="module")
def compiled_cache(tmp_path_factory):
    """One compiled package of :func:`one_block_network` at :data:`SIZE` (compiled once)."""
    folder = tmp_path_factory.mktemp("cpu_compiled")
    with torch.no_grad():
        _runner, seconds, from_cache = compile_for_cpu(one_block_network(), *SIZE, folder)
    assert not from_cache and seconds > 0
    return folder


@pytest.mark.slow
def test_compiled_package_matches_eager_and_loads_from_the_cache(compiled_cache):
    network = one_block_network()
    runner, _seconds, from_cache = compile_for_cpu(network, *SIZE, compiled_cache)
    assert from_cache and len(list(compiled_cache.glob("*.pt2"))) == 1
    x = torch.rand(1, 1, *SIZE)
    with torch.no_grad():
        assert float((runner(x) - network(x)).abs().max()) <= TOLERANCE


@pytest.mark.slow
def test_new_weights_compile_a_new_package_with_their_own_output(compiled_cache, tmp_path):
    other = one_block_network(seed=1)
    # copy the cache: this test adds a package
    for package in compiled_cache.glob("*.pt2"):
        (tmp_path / package.name).write_bytes(package.read_bytes())
    runner, _seconds, from_cache = compile_for_cpu(other, *SIZE, tmp_path)
    assert not from_cache and len(list(tmp_path.glob("*.pt2"))) == 2
    x = torch.rand(1, 1, *SIZE)
    with torch.no_grad():
        assert float((runner(x) - other(x)).abs().max()) <= TOLERANCE
        assert float((runner(x) - one_block_network()(x)).abs().max()) > 1e-3


@pytest.mark.slow
def test_restore_volume_with_the_compiled_network_matches_the_plain_one(compiled_cache, monkeypatch):
    from monai_tat.inference import restore_volume

    network = one_block_network()
    volume = torch.linspace(-1000, 1500, 20 * 24 * 3).reshape(20, 24, 3)  # (I, J, K): slices are 24 x 20 (rows j)
    monkeypatch.setenv(cpu_speed.CACHE_ENV, str(compiled_cache))
    monkeypatch.setenv(cpu_speed.MODE_ENV, "off")
    plain = restore_volume(volume, network, task="ct", device="cpu")
    calls = []
    original = CompiledSliceNetwork.forward

    def counting(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(CompiledSliceNetwork, "forward", counting)
    monkeypatch.setenv(cpu_speed.MODE_ENV, "on")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the compiled path ran
        fast = restore_volume(volume, network, task="ct", device="cpu")
    assert calls and all(shape[-2:] == SIZE for shape in calls)
    assert fast.meta["restoration"]["network"] == plain.meta["restoration"]["network"] == "Sequential"
    # the model range [0, 1] spans 4096 HU
    assert float((fast.as_tensor() - plain.as_tensor()).abs().max()) <= TOLERANCE * 4096
