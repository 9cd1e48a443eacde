# Lets the tests import the implementation beside them, wherever pytest is started.
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
