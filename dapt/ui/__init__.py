"""What a person looks at: the JupyterLab explorer (``explore`` logic, ``widgets`` its thin
view) and HTML exports of executed notebooks (``html``).

Imports ``pipeline``, ``analysis``, ``plots`` and ``core``.
"""
