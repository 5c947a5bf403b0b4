"""fcos_lib: the library behind the FCOS notebook series.

One module per idea, in the notebooks' order (``fcos_lib.data`` for 01, ``backbone`` for 02,
... ``evaluate`` for 07). The modules stand on floors, each importing only from its own floor
or below: the table of floors, with what each module holds, is in ``docs/design.md``, the one
description of them, which ``tests/test_layout.py`` reads and checks against the imports.
"""

__version__ = "0.1.0"
