"""``python -m services.strategy_engine`` (same as ``hftfeed strategy-engine``)."""

from __future__ import annotations

import sys

from services.common.lifecycle import service_main
from services.strategy_engine.service import SERVICE, run_engine
from services.strategy_engine.settings import StrategySettings


def main() -> int:
    return service_main(SERVICE, StrategySettings, run_engine)


if __name__ == "__main__":
    sys.exit(main())
