import os
import sys

# Tests never touch the network: everything is built from tiny configs or shipped files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and their spin-waiting makes a busy 2-core machine
# (a benchmark beside the suite, or the child processes some tests start) many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))
