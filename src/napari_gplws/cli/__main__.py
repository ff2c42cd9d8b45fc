"""``python -m napari_gplws.cli`` is the ``gplws`` command."""

from napari_gplws.cli.main import main

raise SystemExit(main())
