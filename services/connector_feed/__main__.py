"""``python -m services.connector_feed`` (same as ``hftfeed connector-feed``)."""

from __future__ import annotations

import sys

from services.common.lifecycle import run_service
from services.common.logging import configure_logging
from services.common.settings import SettingsError, load_settings
from services.connector_feed.service import SERVICE, run_feed
from services.connector_feed.settings import FeedSettings


def main() -> int:
    try:
        settings = load_settings(FeedSettings)
    except SettingsError as error:
        print(f"connector_feed: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service=SERVICE)
    return run_service(lambda stop: run_feed(settings, stop))


if __name__ == "__main__":
    sys.exit(main())
