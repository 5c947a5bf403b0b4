"""fcos_lib: the library behind the FCOS notebook series.

One module per idea, in the notebooks' order; each module imports only from the floors below
its own (``tests/test_layout.py`` keeps it so):

=====================  ==========================================================
notebook               modules
=====================  ==========================================================
01 data                ``fcos_lib.data``
02 backbone            ``fcos_lib.backbone``
03 FPN                 ``fcos_lib.fpn``
04 head                ``fcos_lib.head``, ``fcos_lib.model``
05 targets and losses  ``fcos_lib.targets``, ``fcos_lib.losses``,
                       ``fcos_lib.positives``
06 training            ``fcos_lib.train``, ``fcos_lib.trainer``, ``fcos_lib.optim``
07 evaluation          ``fcos_lib.inference``, ``fcos_lib.evaluate``,
                       ``fcos_lib.matching``, ``fcos_lib.viz``, ``fcos_lib.curves``,
                       ``fcos_lib.viewer``
=====================  ==========================================================

Under them: ``fcos_lib.env`` (device, quick mode, seeds, ``show_source``),
``fcos_lib.config`` (every setting and preset), ``fcos_lib.validate`` (input checks),
``fcos_lib.checkpoint``, ``fcos_lib.distributed``, ``fcos_lib.runlog``. Beside the model:
``fcos_lib.torchvision_port``. On top: ``fcos_lib.commands``, the command line.
"""

__version__ = "0.1.0"
