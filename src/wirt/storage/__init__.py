"""Storage layer: disk image formats (raw, qcow2) behind one block interface, plus the disk tools.

`open_image(path)` (formats.py) returns a `BlockDevice` (block.py); docs/storage.md describes what is supported
and how qcow2 metadata is written so that a crash never corrupts an image.
"""

from wirt.storage.block import BlockDevice
from wirt.storage.formats import open_image, probe_format

__all__ = ["BlockDevice", "open_image", "probe_format"]
