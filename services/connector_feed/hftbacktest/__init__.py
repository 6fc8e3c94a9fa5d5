"""hftbacktest's event files, both ways: replay them onto the bus, record the bus into them.

``format`` (dtype, flags, rounding), ``depth`` (hftbacktest's book in Python), ``decode`` (rows ->
``Trade``/``Depth`` batches), ``connector`` (CONNECTOR_NAME=hftbacktest), ``encode`` (contracts ->
rows) and ``writer`` (the files ``hftfeed record-npz`` writes). See docs/hftbacktest.md.
"""
