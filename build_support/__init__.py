"""Build-time helpers of the wheel (never shipped in it)."""
