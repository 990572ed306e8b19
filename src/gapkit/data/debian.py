"""Where the offline datasets live, and the one-line error when their Debian package is missing."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import GapkitError

# Each root can be moved with an environment variable (useful for tests and non-Debian systems).
FASHION_MNIST_DIR = ("GAPKIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist")
OPENCLIPART_PNG_DIR = ("GAPKIT_OPENCLIPART_PNG_DIR", "/usr/share/openclipart/png", "openclipart-png")
OPENCLIPART_SVG_DIR = ("GAPKIT_OPENCLIPART_SVG_DIR", "/usr/share/openclipart/svg", "openclipart-svg")
EMOJI_FONT = ("GAPKIT_EMOJI_FONT", "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf", "fonts-noto-color-emoji")
CLDR_ANNOTATIONS = ("GAPKIT_CLDR_ANNOTATIONS", "/usr/share/unicode/cldr/common/annotations/en.xml", "unicode-cldr-core")


def require(spec: tuple[str, str, str]) -> Path:
    """The path of a packaged resource; GapkitError with the apt-get command when it is missing."""
    env, default, package = spec
    path = Path(os.environ.get(env) or default)
    if not path.exists():
        raise GapkitError(
            f"{path} not found: install the Debian package with `sudo apt-get install {package}` "
            f"(or point ${env} at a copy)"
        )
    return path
