"""Helpers every layer shares: progress/cancel callbacks, safe file writes, the device.

Private to the package; it imports nothing from napari_gplws except :mod:`napari_gplws.errors`.
"""
