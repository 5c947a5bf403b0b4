"""Backbones: C3-C5 shapes and strides for every backbone (sizes divisible by 32 and not),
channel counts, frozen BatchNorm and stages, and the pretrained-weight download, served from a
local HTTP server (real code path, no internet) and failing offline with a warning."""
import functools
import hashlib
import http.server
import math
import socket
import threading
import types
import warnings

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from fcos_lib import backbone as B
from fcos_lib.backbone import BACKBONES, build_backbone

CHANNELS = {"tiny": [48, 96, 128], "regnet_x_400mf": [64, 160, 400],
            "resnet18": [128, 256, 512], "resnet50": [512, 1024, 2048]}


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("size", [(64, 96), (72, 100)])
def test_shapes_strides_and_channels(name, size):
    """C_l is (B, channels, ceil(H / s), ceil(W / s)): sizes not divisible by 32 round up
    (the model itself refuses them, see test_model.py)."""
    net = build_backbone(name).eval()
    with torch.no_grad():
        features = net(torch.randn(2, 3, *size))
    assert net.out_channels == CHANNELS[name]
    assert len(features) == 3
    for f, s, c in zip(features, net.strides, net.out_channels):
        assert f.shape == (2, c, math.ceil(size[0] / s), math.ceil(size[1] / s))


@pytest.mark.parametrize("name", ["tiny", "regnet_x_400mf"])
def test_gradients_reach_every_parameter(name):
    net = build_backbone(name).train()
    sum(f.mean() for f in net(torch.randn(2, 3, 64, 64))).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_resnet_body_keeps_torchvision_names_and_outputs():
    """The body is torchvision's classifier minus pooling and fc: same state-dict keys, and
    C5 equals the classifier's layer4 output."""
    net = build_backbone("resnet18").eval()
    reference = models.resnet18(weights=None).eval()
    expected = {k for k in reference.state_dict() if not k.startswith("fc.")}
    assert set(net.body.state_dict()) == expected
    reference.load_state_dict({**reference.state_dict(), **net.body.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        r = reference
        c5 = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
        assert torch.equal(net(x)[-1], c5)


@pytest.mark.parametrize("name", ["tiny", "resnet18"])
def test_freeze_bn_and_stages(name):
    net = build_backbone(name, freeze_bn=True, frozen_stages=2)
    kinds = {type(m) for m in net.modules()}
    assert FrozenBatchNorm2d in kinds and nn.BatchNorm2d not in kinds
    frozen = {n for stage in net.stages[:2] for n in stage}
    for name_, module in net.body.items():
        for p in module.parameters():
            assert p.requires_grad == (name_ not in frozen)
    sum(f.mean() for f in net(torch.randn(1, 3, 64, 64))).backward()
    first_conv = next(net.body[net.stages[0][0]].parameters())
    assert first_conv.grad is None
    assert next(net.body[net.stages[-1][0]].parameters()).grad is not None


def test_bad_arguments():
    with pytest.raises(ValueError, match="choose one of"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_backbone("tiny", pretrained=True)
    with pytest.raises(ValueError, match="frozen_stages=6"):
        build_backbone("tiny", frozen_stages=6)


# ------------------------------------------------------------------ pretrained weights


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test log clean
        pass


@pytest.fixture()
def weights_server(tmp_path, monkeypatch):
    """A local HTTP server serving a resnet18 state dict under a checksummed name, and an
    empty torch hub cache; yields (state dict, base URL)."""
    torch.manual_seed(1)
    state = models.resnet18(weights=None).state_dict()
    served = tmp_path / "served"
    served.mkdir()
    raw = served / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    raw.rename(served / f"resnet18-{digest[:8]}.pth")
    (served / "resnet18-00000000.pth").write_bytes((served / f"resnet18-{digest[:8]}.pth")
                                                   .read_bytes())
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    old_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}", digest[:8]
    finally:
        server.shutdown()
        server.server_close()
        torch.hub.set_dir(old_dir)


def use_url(monkeypatch, url):
    monkeypatch.setitem(B.WEIGHTS, "resnet18", types.SimpleNamespace(url=url))


def test_pretrained_weights_download_and_load(weights_server, monkeypatch):
    state, base, digest = weights_server
    use_url(monkeypatch, f"{base}/resnet18-{digest}.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = build_backbone("resnet18", pretrained=True, freeze_bn=True, frozen_stages=2)
    assert isinstance(net.body["bn1"], FrozenBatchNorm2d)
    for key, value in net.body.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not any(p.requires_grad for p in net.body["conv1"].parameters())


@pytest.mark.parametrize("case", ["offline", "bad checksum"])
def test_unavailable_weights_warn_and_go_on(weights_server, monkeypatch, case):
    _, base, _ = weights_server
    url = (f"http://127.0.0.1:{closed_port()}/resnet18-12345678.pth" if case == "offline"
           else f"{base}/resnet18-00000000.pth")
    use_url(monkeypatch, url)
    with pytest.warns(UserWarning) as record:
        net = build_backbone("resnet18", pretrained=True, freeze_bn=True, frozen_stages=2)
    message = str(record[0].message)
    assert "could not download the ImageNet weights of resnet18" in message
    assert "random init" in message and "\n" not in message
    # random init goes on, and nothing is frozen (frozen random layers would stay random)
    assert all(p.requires_grad for p in net.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    assert (net.freeze_bn, net.frozen_stages) == (False, 0)
    assert net(torch.randn(2, 3, 64, 64))[-1].shape == (2, 512, 2, 2)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
