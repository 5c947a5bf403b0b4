"""Backbones: a CNN that turns an image into the C3, C4, C5 feature maps (strides 8, 16, 32).

A backbone halves the resolution five times: a stem (stride 2 or 4), then stages. FCOS keeps
the outputs of the last three stages, C3, C4 and C5, whose cells are 8, 16 and 32 input pixels
apart; deeper maps are coarser but see more of the image and carry more abstract features.

Four backbones, one interface (:class:`Backbone`):

- ``"tiny"``: a small CNN written here, trained from scratch; fast enough on a CPU for the
  shapes dataset, the demo and the tests.
- ``"regnet_x_400mf"`` (the course's), ``"resnet18"``, ``"resnet50"`` (the paper's): the
  torchvision classifiers without their pooling and classifier, with ImageNet weights from
  torchvision's weights API when ``pretrained=True``. Without a network the download fails:
  a one-line warning says so and the backbone goes on from random initialization.

Detectors fine-tune a pretrained backbone with small batches, too small for BatchNorm's batch
statistics; the paper (following Detectron) therefore freezes BatchNorm (``freeze_bn``: each
BatchNorm becomes a fixed affine map, ``torchvision.ops.FrozenBatchNorm2d``) and the first
stages (``frozen_stages``: 1 = the stem, 2 = stem and first stage, the paper's choice).
"""
from __future__ import annotations

import socket
import sys
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from fcos_lib.config import MODEL_CHOICES
from fcos_lib.validate import one_of

BACKBONES = MODEL_CHOICES["backbone"]

# ImageNet weights of each torchvision backbone (the V1 recipes: the course's and the paper's).
WEIGHTS = {
    "regnet_x_400mf": models.RegNet_X_400MF_Weights.IMAGENET1K_V1,
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
}


class Backbone(nn.Module):
    """Runs named modules in order and returns the outputs of three of them: C3, C4, C5.

    The modules keep the names they have in the torchvision classifier (``conv1``, ``layer1``
    ...), so a torchvision state dict loads into ``body`` unchanged.

    Attributes:
        body: the modules, in the order they run.
        stages: five lists of module names: the stem, then the four stages (strides 4-32).
        out_channels: channels of C3, C4, C5.
        strides: (8, 16, 32), in input pixels.
        freeze_bn, frozen_stages: what :func:`build_backbone` applied.
    """

    strides = (8, 16, 32)

    def __init__(self, body: dict[str, nn.Module], stages: list[list[str]],
                 out_channels: list[int]):
        super().__init__()
        self.body = nn.ModuleDict(body)
        self.stages = stages
        self.out_channels = list(out_channels)
        self._returned = {stage[-1] for stage in stages[2:]}
        self.freeze_bn, self.frozen_stages = False, 0

    def forward(self, images: Tensor) -> list[Tensor]:
        """Args: images (B, 3, H, W). Returns: [C3, C4, C5], (B, C_l, H/s_l, W/s_l) each,
        rounded up when H or W is not divisible by the stride."""
        features, x = [], images
        for name, module in self.body.items():
            x = module(x)
            if name in self._returned:
                features.append(x)
        return features

    def freeze_stages(self, count: int) -> None:
        """Stop training the first ``count`` stages (1 = the stem; 0 trains everything)."""
        if not 0 <= count <= len(self.stages):
            raise ValueError(f"frozen_stages={count}: choose 0 (train all) to "
                             f"{len(self.stages)} (freeze all)")
        for stage in self.stages[:count]:
            for name in stage:
                self.body[name].requires_grad_(False)


def conv_bn_relu(cin: int, cout: int, stride: int = 1, norm: type[nn.Module] = nn.BatchNorm2d
                 ) -> nn.Sequential:
    """3x3 convolution (no bias: the norm has one), norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), norm(cout),
                         nn.ReLU(inplace=True))


def tiny_backbone(freeze_bn: bool = False) -> Backbone:
    """A 5-stage CNN of 3x3 convs (0.43 M parameters): each stage halves the resolution with a
    strided conv, then one more conv; C3, C4, C5 have 48, 96, 128 channels.

    Small on purpose: on the 128 px shapes dataset a batch of 16 trains in a fraction of a
    second on a CPU, and the largest object (the whole image) still fits C5's receptive field.
    """
    norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
    widths = [16, 32, 48, 96, 128]
    body, cin = {}, 3
    for i, cout in enumerate(widths):
        layers = [conv_bn_relu(cin, cout, 2, norm)]
        if i > 0:  # the stem stays one conv: full resolution is where convs cost most
            layers.append(conv_bn_relu(cout, cout, 1, norm))
        body["stem" if i == 0 else f"stage{i}"] = nn.Sequential(*layers)
        cin = cout
    stages = [[name] for name in body]
    return Backbone(body, stages, widths[2:])


# Seconds to wait for the weights' server to connect, answer or send the next bytes: a
# server that takes the connection and never answers fails soon, and training goes on.
WEIGHTS_TIMEOUT = 15.0


def download_weights(name: str) -> dict[str, Tensor] | None:
    """The ImageNet state dict of backbone ``name`` through torchvision's weights (their URL and
    checksum; cached under ``torch.hub.get_dir()``). A download says what it waits for and
    gives up after :data:`WEIGHTS_TIMEOUT` seconds without an answer.

    Returns:
        The state dict, or None, with a one-line warning, when it could not be downloaded
        (offline, a proxy, a silent server, a bad checksum).
    """
    url = WEIGHTS[name].url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not cached.exists():
        print(f"downloading the ImageNet weights of {name} from {urlparse(url).netloc} "
              f"(waiting up to {WEIGHTS_TIMEOUT:g} s for an answer)", file=sys.stderr)
    previous = socket.getdefaulttimeout()     # torch.hub's urlopen takes no timeout itself
    socket.setdefaulttimeout(WEIGHTS_TIMEOUT)
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
        if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None),
                                                         TimeoutError):
            reason = f"no answer within {WEIGHTS_TIMEOUT:g} s"
        else:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
        warnings.warn(f"could not download the ImageNet weights of {name} from {url} "
                      f"({reason}): training starts from random init, BatchNorm and all "
                      "stages trainable", stacklevel=4)
        return None
    finally:
        socket.setdefaulttimeout(previous)


def torchvision_backbone(name: str, state: dict[str, Tensor] | None = None,
                         freeze_bn: bool = False) -> Backbone:
    """A torchvision classifier cut into stem + 4 stages, with ``state`` loaded if given."""
    norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
    net = getattr(models, name)(weights=None, norm_layer=norm)
    if state is not None:
        net.load_state_dict(state)
    if name.startswith("resnet"):
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        body = {n: getattr(net, n) for n in names}
        stages = [["conv1", "bn1", "relu", "maxpool"], ["layer1"], ["layer2"], ["layer3"],
                  ["layer4"]]
        channels = [_out(net.layer2), _out(net.layer3), _out(net.layer4)]
    else:  # regnet: a stem, then trunk_output = block1..block4
        body = {"stem": net.stem, **dict(net.trunk_output.named_children())}
        stages = [[n] for n in body]
        channels = [_out(body["block2"]), _out(body["block3"]), _out(body["block4"])]
    return Backbone(body, stages, channels)


def _out(stage: nn.Module) -> int:
    """Output channels of a stage: those of its last convolution's last BatchNorm."""
    norms = [m for m in stage.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    return int(norms[-1].weight.shape[0])


def build_backbone(name: str = "tiny", pretrained: bool = False, freeze_bn: bool = False,
                   frozen_stages: int = 0) -> Backbone:
    """The backbone called ``name`` (one of :data:`BACKBONES`).

    Args:
        name: ``"tiny"``, ``"regnet_x_400mf"``, ``"resnet18"`` or ``"resnet50"``.
        pretrained: load ImageNet weights (torchvision backbones only). When they cannot be
            downloaded: a warning, random init, and ``freeze_bn`` and ``frozen_stages`` are
            not applied (frozen random layers would stay random).
        freeze_bn: BatchNorm layers become fixed affine maps (FrozenBatchNorm2d).
        frozen_stages: how many of the five stages (stem first) get no gradient.

    Returns:
        A :class:`Backbone`; ``backbone(images)`` gives [C3, C4, C5]. Its ``freeze_bn`` and
        ``frozen_stages`` attributes say what was applied.
    """
    one_of("backbone", name, BACKBONES)
    if not 0 <= frozen_stages <= 5:
        raise ValueError(f"frozen_stages={frozen_stages}: choose 0 (train all) to 5 (freeze all)")
    if name == "tiny" and pretrained:
        raise ValueError("the tiny backbone is trained from scratch and has no pretrained "
                         "weights: use pretrained=False, or a torchvision backbone")
    state = download_weights(name) if pretrained else None
    if pretrained and state is None:
        freeze_bn, frozen_stages = False, 0
    if name == "tiny":
        backbone = tiny_backbone(freeze_bn)
    else:
        backbone = torchvision_backbone(name, state, freeze_bn)
    backbone.freeze_stages(frozen_stages)
    backbone.freeze_bn, backbone.frozen_stages = freeze_bn, frozen_stages
    return backbone
