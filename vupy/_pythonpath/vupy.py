# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy, as the programs of a session import it.

The directory of this file holds nothing else, and vupy puts it on the
PYTHONPATH of every session (vupy/_environment.py), so that any python3
there can `import vupy` without seeing the rest of the environment vupy is
installed in (its site-packages, or the source tree of an editable
install).  This module is a stand-in: it becomes the real package, the
directory above this one (a module with a __path__ is a package), and runs
that package's __init__.py.
"""
import os as _os

__path__ = [_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))]
__package__ = __name__
__file__ = _os.path.join(__path__[0], "__init__.py")
with open(__file__, "rb") as _source:
    exec(compile(_source.read(), __file__, "exec"))
del _os, _source
