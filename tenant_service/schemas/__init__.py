"""Wire formats <-> validated values: the field parsers handlers share (no aiohttp)."""
