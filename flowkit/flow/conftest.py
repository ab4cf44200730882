"""pytest --doctest-modules: the Triton kernels' module imports the optional ``triton`` package
(the ``gpu`` extra); without it the module is not collected."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("triton") else ["triton_tvl1.py"]
