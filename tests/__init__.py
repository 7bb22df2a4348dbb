"""flexhost's tests.

The suite writes bytecode caches (`__pycache__`, ignored by git) even where
PYTHONDONTWRITEBYTECODE is set: otherwise each xdist worker rewrites the asserts
of every test module again (4 s of its start), and each of the processes the
tests start (backends, gateways, workers, `flexhost up`) compiles our modules again.
"""

import sys

sys.dont_write_bytecode = False
