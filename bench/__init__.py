"""txcaddy's benchmark harness (``python bench/run.py``; see bench/README.md).

A package only so that the unit tests can import its modules; it is not part
of the installed ``txcaddy`` distribution.
"""
