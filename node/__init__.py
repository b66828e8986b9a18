"""The I/O shell of ncii-node around the pure `protocol` package."""
