"""``python -m services.connector_feed`` (same as ``hftfeed connector-feed``)."""

from __future__ import annotations

import sys

from services.common.lifecycle import service_main
from services.connector_feed.service import SERVICE, run_feed
from services.connector_feed.settings import FeedSettings


def main() -> int:
    return service_main(SERVICE, FeedSettings, run_feed)


if __name__ == "__main__":
    sys.exit(main())
