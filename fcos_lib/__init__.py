"""fcos_lib: the library behind the FCOS notebook series.

One module per idea, in the notebooks' order:

==========================  ===========================================
notebook                    modules
==========================  ===========================================
01 data                     ``fcos_lib.data``
02 backbone                 ``fcos_lib.backbone``
03 FPN                      ``fcos_lib.fpn``
04 head                     ``fcos_lib.head``, ``fcos_lib.model``
05 targets and losses       ``fcos_lib.targets``, ``fcos_lib.losses``
06 training                 ``fcos_lib.train``
07 evaluation               ``fcos_lib.inference``, ``fcos_lib.evaluate``,
                            ``fcos_lib.viz``
==========================  ===========================================

``fcos_lib.env`` holds what every notebook needs first: the device, the quick-mode
switch, seeding and a helper that shows a function's source.
"""

__version__ = "0.1.0"
