import os
import sys

# tests import their helpers (opcheck) by name
sys.path.insert(0, os.path.dirname(__file__))
# the suite runs on 2 cores: keep the core at 2 threads unless told otherwise
os.environ.setdefault("OMP_NUM_THREADS", "2")
