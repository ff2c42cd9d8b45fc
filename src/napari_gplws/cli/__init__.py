"""The ``gplws`` command line. argparse lives here and nowhere else in the package."""

from napari_gplws.cli.main import main

__all__ = ["main"]
