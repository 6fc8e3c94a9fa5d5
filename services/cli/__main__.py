"""``python -m services.cli`` is ``hftfeed``."""

from services.cli import main

main()
