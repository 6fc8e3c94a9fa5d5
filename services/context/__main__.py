"""``python -m services.context`` (same as ``hftfeed context``)."""

from __future__ import annotations

import sys

from services.common.lifecycle import service_main
from services.context.service import SERVICE, run_context
from services.context.settings import ContextSettings


def main() -> int:
    return service_main(SERVICE, ContextSettings, run_context)


if __name__ == "__main__":
    sys.exit(main())
