"""vupy, as the programs of a session import it.

The directory above this one holds nothing but this package, and vupy puts
it on the PYTHONPATH of every session (vupy/_environment.py), so that any
python3 there can `import vupy` without seeing the rest of the environment
vupy is installed in (its site-packages, or the source tree of an editable
install).  This file is a stand-in: it makes this module the real package,
two directories up, and runs that package's __init__.py in it.
"""
import os as _os

__path__ = [_os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))]
__file__ = _os.path.join(__path__[0], "__init__.py")
with open(__file__, "rb") as _source:
    exec(compile(_source.read(), __file__, "exec"))
del _os, _source
