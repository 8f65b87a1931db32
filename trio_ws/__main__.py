"""``python -m trio_ws module:handler``: see :mod:`trio_ws._cli`."""

from ._cli import MODULE_PROG, main

if __name__ == "__main__":
    main(prog=MODULE_PROG)
