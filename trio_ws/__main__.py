"""``python -m trio_ws module:handler``: see :mod:`trio_ws._cli`."""

from ._cli import main

if __name__ == "__main__":
    main()
