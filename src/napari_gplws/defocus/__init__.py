"""defocus."""
