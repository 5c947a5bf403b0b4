"""``python -m fcos_lib COMMAND``: see :mod:`fcos_lib.commands`."""
import sys

from fcos_lib.commands import main

if __name__ == "__main__":
    sys.exit(main())
